from halogen.cli import main

main()
