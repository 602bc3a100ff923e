"""English templates and word lists for the sample tickets (see :mod:`.sample_tickets`)."""

from __future__ import annotations

from open_ticket_ai.demo.language import Language, QueueWords, words

__all__ = ["ENGLISH"]

ENGLISH = Language(
    code="en",
    queues={
        "IT Support": QueueWords(
            subjects=(
                "{item} not working",
                "Problem with my {item}",
                "Cannot log in to {item}",
                "{item} keeps crashing",
                "Error message in {item}",
            ),
            problems=(
                "Since this morning my {item} does not work anymore.",
                "I cannot sign in to {item}, it says my password is invalid.",
                "The {item} freezes every few minutes and I have to restart.",
                "After the last update the {item} shows an error code 0x80070005.",
                "My {item} is extremely slow and the VPN connection drops.",
                "I need access rights for {item} for my new project.",
            ),
            items=words(
                "laptop, Outlook, VPN client, printer, email account, Wi-Fi, SharePoint, Teams,"
                " monitor, docking station, password reset, network drive, SAP login, keyboard"
            ),
            details=(
                "I already rebooted the computer twice.",
                "The error appears right after I enter my credentials.",
                "My colleagues on the same floor have the same issue with the network.",
                "I attached a screenshot of the error dialog.",
                "The device is the one IT installed last month.",
            ),
            aside="My laptop was also very slow while writing this.",
        ),
        "Billing": QueueWords(
            subjects=(
                "Question about {item}",
                "Wrong amount on {item}",
                "{item} charged twice",
                "Refund for {item}",
                "Problem with {item}",
            ),
            problems=(
                "The {item} shows a higher amount than we agreed on.",
                "We were charged twice for the same {item}.",
                "Please send us a corrected {item} with our new VAT number.",
                "I would like a refund for the {item} from last month.",
                "Our {item} failed although the card is valid.",
                "Could you explain the extra fees on the {item}?",
            ),
            items=words(
                "invoice, credit card payment, subscription fee, direct debit, credit note,"
                " annual invoice, bank transfer, payment reminder, billing address, receipt,"
                " late fee, VAT invoice"
            ),
            details=(
                "The invoice number is INV-{number}.",
                "Our customer number is {number}.",
                "The payment was made on the 3rd by bank transfer.",
                "Please update the billing contact to our accounting team.",
                "We need this for our year-end closing.",
            ),
            aside="Also, the last invoice still shows our old address.",
        ),
        "Sales": QueueWords(
            subjects=(
                "Quote request for {item}",
                "Interested in {item}",
                "Pricing for {item}",
                "Upgrade to {item}",
                "Demo of {item}",
            ),
            problems=(
                "We are interested in the {item} and would like a quote for 50 users.",
                "Could you send us pricing for the {item}?",
                "We want to upgrade our contract to the {item}.",
                "Is it possible to schedule a demo of the {item} next week?",
                "Do you offer a discount on the {item} for non-profits?",
                "Our team is evaluating the {item} and has a few questions.",
            ),
            items=words(
                "enterprise plan, premium license, volume discount, new product line,"
                " annual contract, team edition, trial version, partner program, add-on module,"
                " on-premise version, starter package, API access"
            ),
            details=(
                "We currently have {number} employees and are growing quickly.",
                "Our budget for this year has already been approved.",
                "A competitor offered us a similar package.",
                "Please contact me by phone to discuss the details.",
                "We would like to sign before the end of the quarter.",
            ),
            aside="We might also be interested in more licenses later this year.",
        ),
        "HR": QueueWords(
            subjects=(
                "Question about {item}",
                "Request: {item}",
                "{item} for next month",
                "Update to my {item}",
                "{item} application",
            ),
            problems=(
                "I would like to request {item} for the first two weeks of August.",
                "My {item} shows the wrong number of days.",
                "Please update my {item} after my move.",
                "Who is responsible for {item} in our department?",
                "I have a question regarding my {item} from last month.",
                "I want to apply for {item} starting next quarter.",
            ),
            items=words(
                "vacation, payslip, parental leave, sick note, employment contract,"
                " home office agreement, training budget, pension plan, overtime,"
                " employee onboarding, reference letter, part-time work"
            ),
            details=(
                "My manager has already agreed.",
                "My employee ID is {number}.",
                "I attached the signed form from the doctor.",
                "I started in the company in March.",
                "Please treat this confidentially.",
            ),
            aside="I will be on vacation next week, so please reply soon.",
        ),
    },
    urgency={
        "low": ("No rush, whenever you have time.", "This is not urgent.", "Just for info."),
        "normal": ("Thanks for looking into it.", "Please let me know.", "This week is fine."),
        "high": ("Please handle this soon.", "This is important for us.", "I need this today."),
        "very high": (
            "URGENT: the whole team is blocked!",
            "This is critical, production is down.",
            "Please help immediately, customers are affected.",
        ),
    },
    greetings=("Hello,", "Hi team,", "Dear support,", "Good morning,", ""),
    closings=("Best regards,", "Thanks,", "Kind regards,", "Cheers,"),
    vague_subjects=("Quick question", "Follow-up", "Request", "Need help", "Callback please"),
    vague_problems=(
        "Could someone call me back about my request from last week?",
        "I still have not heard back about my last email.",
        "Who can I talk to about this? It is about the thing we discussed.",
        "Please see the attached document and get back to me.",
    ),
)
