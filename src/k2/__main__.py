from k2.cli import main

main()
