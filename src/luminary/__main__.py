from luminary.cli.app import main

main()
