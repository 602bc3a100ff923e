from open_ticket_ai.cli import main

main()
