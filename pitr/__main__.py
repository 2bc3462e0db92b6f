from pitr.cli import main

main()
