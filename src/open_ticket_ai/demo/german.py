"""German templates and word lists for the sample tickets (see :mod:`.sample_tickets`)."""

from __future__ import annotations

from open_ticket_ai.demo.language import Language, QueueWords, words

__all__ = ["GERMAN"]

GERMAN = Language(
    code="de",
    queues={
        "IT Support": QueueWords(
            subjects=(
                "{item} funktioniert nicht",
                "Problem mit meinem {item}",
                "Anmeldung bei {item} nicht möglich",
                "{item} stürzt ständig ab",
                "Fehlermeldung in {item}",
            ),
            problems=(
                "Seit heute morgen funktioniert mein {item} nicht mehr.",
                "Ich kann mich nicht bei {item} anmelden, das Passwort wird abgelehnt.",
                "Der {item} friert alle paar Minuten ein und ich muss neu starten.",
                "Nach dem letzten Update zeigt {item} einen Fehlercode an.",
                "Mein {item} ist extrem langsam und die VPN-Verbindung bricht ab.",
                "Ich brauche Zugriffsrechte für {item} für mein neues Projekt.",
            ),
            items=words(
                "Laptop, Outlook, VPN-Client, Drucker, E-Mail-Konto, WLAN, SharePoint, Teams,"
                " Bildschirm, Dockingstation, Passwort, Netzlaufwerk, SAP-Zugang, Tastatur"
            ),
            details=(
                "Ich habe den Rechner schon zweimal neu gestartet.",
                "Der Fehler kommt direkt nach der Eingabe meiner Zugangsdaten.",
                "Die Kollegen auf meiner Etage haben dasselbe Problem mit dem Netzwerk.",
                "Ein Screenshot der Fehlermeldung ist angehängt.",
                "Das Gerät wurde letzten Monat von der IT eingerichtet.",
            ),
            aside="Mein Laptop war beim Schreiben auch sehr langsam.",
        ),
        "Billing": QueueWords(
            subjects=(
                "Frage zur {item}",
                "Falscher Betrag auf {item}",
                "{item} doppelt abgebucht",
                "Erstattung für {item}",
                "Problem mit {item}",
            ),
            problems=(
                "Die {item} weist einen höheren Betrag aus als vereinbart.",
                "Uns wurde dieselbe {item} zweimal berechnet.",
                "Bitte senden Sie uns eine korrigierte {item} mit unserer neuen USt-IdNr.",
                "Ich möchte eine Erstattung für die {item} vom letzten Monat.",
                "Unsere {item} ist fehlgeschlagen, obwohl die Karte gültig ist.",
                "Können Sie die zusätzlichen Gebühren auf der {item} erklären?",
            ),
            items=words(
                "Rechnung, Kreditkartenzahlung, Abogebühr, Lastschrift, Gutschrift,"
                " Jahresrechnung, Überweisung, Zahlungserinnerung, Rechnungsadresse, Quittung,"
                " Mahngebühr, Umsatzsteuer-Rechnung"
            ),
            details=(
                "Die Rechnungsnummer lautet RE-{number}.",
                "Unsere Kundennummer ist {number}.",
                "Die Zahlung erfolgte am 3. per Überweisung.",
                "Bitte ändern Sie den Rechnungskontakt auf unsere Buchhaltung.",
                "Wir benötigen das für unseren Jahresabschluss.",
            ),
            aside="Außerdem steht auf der letzten Rechnung noch unsere alte Adresse.",
        ),
        "Sales": QueueWords(
            subjects=(
                "Angebotsanfrage für {item}",
                "Interesse an {item}",
                "Preise für {item}",
                "Upgrade auf {item}",
                "Demo von {item}",
            ),
            problems=(
                "Wir interessieren uns für {item} und bitten um ein Angebot für 50 Nutzer.",
                "Könnten Sie uns die Preise für {item} schicken?",
                "Wir möchten unseren Vertrag auf {item} erweitern.",
                "Ist eine Vorführung von {item} nächste Woche möglich?",
                "Gibt es einen Rabatt auf {item} für gemeinnützige Vereine?",
                "Unser Team prüft {item} und hat einige Fragen.",
            ),
            items=words(
                "Enterprise-Tarif, Premium-Lizenz, Mengenrabatt, neue Produktlinie,"
                " Jahresvertrag, Team-Edition, Testversion, Partnerprogramm, Zusatzmodul,"
                " On-Premise-Version, Starterpaket, API-Zugang"
            ),
            details=(
                "Wir haben derzeit {number} Mitarbeiter und wachsen schnell.",
                "Unser Budget für dieses Jahr ist bereits freigegeben.",
                "Ein Mitbewerber hat uns ein ähnliches Paket angeboten.",
                "Bitte rufen Sie mich an, um die Details zu besprechen.",
                "Wir möchten noch vor Quartalsende unterschreiben.",
            ),
            aside="Eventuell brauchen wir später im Jahr weitere Lizenzen.",
        ),
        "HR": QueueWords(
            subjects=(
                "Frage zu {item}",
                "Antrag: {item}",
                "{item} für nächsten Monat",
                "Änderung meiner {item}",
                "Antrag auf {item}",
            ),
            problems=(
                "Ich möchte {item} für die ersten zwei Augustwochen beantragen.",
                "Meine {item} zeigt die falsche Anzahl an Tagen.",
                "Bitte aktualisieren Sie meine {item} nach meinem Umzug.",
                "Wer ist in unserer Abteilung für {item} zuständig?",
                "Ich habe eine Frage zu meiner {item} vom letzten Monat.",
                "Ich möchte ab dem nächsten Quartal {item} beantragen.",
            ),
            items=words(
                "Urlaub, Gehaltsabrechnung, Elternzeit, Krankmeldung, Arbeitsvertrag,"
                " Homeoffice-Vereinbarung, Weiterbildungsbudget, Betriebsrente, Überstunden,"
                " Einarbeitung, Arbeitszeugnis, Teilzeit"
            ),
            details=(
                "Meine Führungskraft hat bereits zugestimmt.",
                "Meine Personalnummer ist {number}.",
                "Die unterschriebene Bescheinigung vom Arzt ist angehängt.",
                "Ich bin seit März im Unternehmen.",
                "Bitte behandeln Sie das vertraulich.",
            ),
            aside="Ich bin nächste Woche im Urlaub, bitte antworten Sie bald.",
        ),
    },
    urgency={
        "low": ("Keine Eile, wann immer Sie Zeit haben.", "Nicht dringend.", "Nur zur Info."),
        "normal": ("Danke fürs Nachsehen.", "Bitte geben Sie Bescheid.", "Diese Woche reicht."),
        "high": ("Bitte bald erledigen.", "Das ist wichtig für uns.", "Ich brauche das heute."),
        "very high": (
            "DRINGEND: das ganze Team ist blockiert!",
            "Das ist kritisch, die Produktion steht.",
            "Bitte sofort helfen, Kunden sind betroffen.",
        ),
    },
    greetings=("Hallo,", "Hallo zusammen,", "Sehr geehrte Damen und Herren,", "Guten Morgen,", ""),
    closings=("Viele Grüße,", "Danke und Gruß,", "Mit freundlichen Grüßen,", "Beste Grüße,"),
    vague_subjects=("Kurze Frage", "Nachfrage", "Anliegen", "Bitte um Hilfe", "Bitte um Rückruf"),
    vague_problems=(
        "Könnte mich bitte jemand wegen meiner Anfrage von letzter Woche zurückrufen?",
        "Ich habe auf meine letzte E-Mail noch keine Antwort bekommen.",
        "An wen kann ich mich wenden? Es geht um das besprochene Thema.",
        "Bitte sehen Sie sich das angehängte Dokument an und melden Sie sich.",
    ),
)
