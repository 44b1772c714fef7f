from mailsvc.cli import main

main()
