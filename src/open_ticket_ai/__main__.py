from open_ticket_ai.cli.main import main

main()
