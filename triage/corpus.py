"""The labelled training corpus: template families in YAML, rendered into raw mail.

A *family* is one way of writing one kind of mail (one Amazon template of one era,
or one style of buyer), kept in ``families/<lang>/<family>.yaml``::

    family: en-atoz-claim-received-2019   # unique id, also the cross-validation group
    type: claim
    severity: critical
    lang: en
    count: 40
    from: ['"Amazon Seller Central" <atoz-guarantee-no-reply@amazon.com>']
    format: html                          # html | text | both
    encoding: quoted-printable            # quoted-printable | base64 | 8bit | random
    headers: {X-Space-Notification-Type: A_Z_CLAIM_RESPONDENT_NOTIFY}
    subjects: ["A-to-z Guarantee claim received for order {order_id}"]
    bodies: ["Dear {seller_name},\\n{buyer_name} has filed a claim ..."]

Slots such as ``{order_id}`` get realistic random values per mail, and ``[[a|b]]``
picks one alternative. Rendering is deterministic (one seed per family): ``triage
train`` renders in memory, and ``python -m triage.corpus`` writes the same ``mail/`` tree
and ``labels.csv`` (generated, not kept in the repository).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import random
import re
import shutil
import string
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import yaml

from triage import resources, taxonomy
from triage.errors import TriageError

LANGS = ("en", "de", "fr", "it", "es")
FORMATS = ("html", "text", "both")
ENCODINGS = ("quoted-printable", "base64", "8bit", "random")
REQUIRED = ("family", "type", "severity", "lang", "count", "from", "subjects", "bodies")
OPTIONAL = ("format", "encoding", "headers", "genuine", "footer")
FAMILY_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
SLOT = re.compile(r"\{([a-z_]+)\}")
CHOICE = re.compile(r"\[\[([^\[\]]*)\]\]")
# Receiving server that stamps Authentication-Results on the rendered mail.
AUTHSERV_ID = "mx.seller-mail.example"


class CorpusError(TriageError):
    """A family file is refused, or the rendered corpus cannot be read."""


def default_corpus_dir() -> Path:
    return resources.corpus_dir()


@dataclass(frozen=True)
class Family:
    """One template family as read from its YAML file."""

    path: Path
    family: str
    type: str
    severity: str
    lang: str
    count: int
    senders: tuple[str, ...]
    subjects: tuple[str, ...]
    bodies: tuple[str, ...]
    format: str = "html"
    encoding: str = "quoted-printable"
    headers: dict[str, str] = field(default_factory=dict)
    genuine: bool = True
    footer: bool = True


@dataclass(frozen=True)
class LabelledMail:
    """One row of ``labels.csv``: a rendered mail and its labels."""

    path: str
    type: str
    severity: str
    family: str
    lang: str


# --- loading and validating -------------------------------------------------------


def _refuse(path: Path, reason: str) -> CorpusError:
    return CorpusError(f"{path}: {reason}")


def _strings(path: Path, data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _refuse(path, f"{key!r} must be a non-empty list of strings")
    return tuple(value)


def _check_labels(path: Path, data: dict[str, Any]) -> None:
    kind, severity = data["type"], data["severity"]
    if kind not in taxonomy.TYPES:
        raise _refuse(path, f"unknown type {kind!r}; expected one of {', '.join(taxonomy.TYPES)}")
    allowed = taxonomy.ALLOWED_SEVERITIES[kind]
    if severity not in allowed:
        raise _refuse(path, f"severity {severity!r} is not allowed for {kind}; expected {allowed}")
    if data["lang"] not in LANGS:
        raise _refuse(path, f"unknown lang {data['lang']!r}; expected one of {LANGS}")


def _check_options(path: Path, data: dict[str, Any]) -> None:
    if not FAMILY_ID.match(str(data["family"])):
        raise _refuse(path, "'family' must be lower-case letters, digits and dashes")
    if not isinstance(data["count"], int) or not 1 <= data["count"] <= 500:
        raise _refuse(path, "'count' must be a whole number from 1 to 500")
    if data.get("format", "html") not in FORMATS:
        raise _refuse(path, f"'format' must be one of {FORMATS}")
    if data.get("encoding", "quoted-printable") not in ENCODINGS:
        raise _refuse(path, f"'encoding' must be one of {ENCODINGS}")
    if not isinstance(data.get("headers", {}), dict):
        raise _refuse(path, "'headers' must be a mapping of header name to value")


def load_family(path: Path) -> Family:
    """Read and validate one family file; a bad file is refused with its path."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise _refuse(path, f"cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise _refuse(path, "a family file must be a YAML mapping")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise _refuse(path, f"missing key(s): {', '.join(missing)}")
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise _refuse(path, f"unknown key(s): {', '.join(unknown)}")
    _check_labels(path, data)
    _check_options(path, data)
    return Family(
        path=path,
        family=data["family"],
        type=data["type"],
        severity=data["severity"],
        lang=data["lang"],
        count=data["count"],
        senders=_strings(path, data, "from"),
        subjects=_strings(path, data, "subjects"),
        bodies=_strings(path, data, "bodies"),
        format=data.get("format", "html"),
        encoding=data.get("encoding", "quoted-printable"),
        headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
        genuine=bool(data.get("genuine", True)),
        footer=bool(data.get("footer", True)),
    )


def load_families(corpus_dir: Path) -> list[Family]:
    """Every family under ``corpus_dir/families``, sorted; ids must be unique."""
    paths = sorted((corpus_dir / "families").glob("*/*.yaml"))
    families = [load_family(p) for p in paths]
    seen: dict[str, Path] = {}
    for fam in families:
        if fam.family in seen:
            raise _refuse(fam.path, f"family id {fam.family!r} is also used by {seen[fam.family]}")
        if fam.path.parent.name != fam.lang:
            raise _refuse(fam.path, f"lang {fam.lang!r} does not match its folder")
        seen[fam.family] = fam.path
    return families


# --- slot values ------------------------------------------------------------------

FIRST = {
    "en": "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Susan "
    "Richard Jessica Joseph Sarah Thomas Karen Chris Nancy Daniel Lisa Matthew Betty Anthony "
    "Sandra Mark Ashley Priya Raj Aisha Wei Olivia Liam Emma Noah Chloe Jack Sophie Harry "
    "Grace Oliver Mohammed Fatima Kevin Megan Tyler Brittany Darnell Keisha",
    "de": "Lukas Anna Maximilian Sophie Jonas Marie Felix Lena Paul Laura Leon Julia Tim Hannah "
    "Jan Katharina Stefan Sabine Thomas Petra Uwe Monika Jürgen Birgit",
    "fr": "Lucas Emma Hugo Léa Louis Chloé Jules Manon Gabriel Camille Arthur Inès Nathan "
    "Sarah Thomas Julie Nicolas Céline Pierre Sophie François Élodie",
    "it": "Francesco Giulia Alessandro Sofia Lorenzo Aurora Matteo Chiara Andrea Martina "
    "Marco Francesca Luca Elena Giuseppe Valentina Paolo Sara Davide Federica",
    "es": "Hugo Lucía Martín Sofía Pablo María Alejandro Paula Daniel Carmen Javier Laura "
    "Carlos Ana Sergio Marta David Elena Jorge Isabel Miguel Cristina",
}
LAST = {
    "en": "Smith Johnson Williams Brown Jones Garcia Miller Davis Wilson Anderson Taylor Thomas "
    "Moore Jackson Martin Lee Thompson White Harris Clark Lewis Walker Hall Young King Wright "
    "Patel Singh Nguyen Chen O'Brien Murphy Evans Roberts Hughes Khan Okafor Kowalski",
    "de": "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch "
    "Richter Klein Wolf Schröder Neumann Braun Zimmermann",
    "fr": "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon "
    "Laurent Lefèvre Michel Garcia David Bertrand Roux Fournier",
    "it": "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno "
    "Gallo Conti De Luca Costa Giordano Mancini Rizzo Lombardi",
    "es": "García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez Martín "
    "Jiménez Ruiz Hernández Díaz Moreno Álvarez Romero Navarro",
}
PRODUCTS = {
    "en": [
        "Stainless Steel Water Bottle 750ml",
        "Bamboo Cutting Board Set of 3",
        "Wireless Earbuds with Charging Case",
        "Yoga Mat Non-Slip 6mm",
        "LED Desk Lamp Dimmable",
        "Kids Rain Jacket Navy Size 8",
        "Organic Matcha Green Tea Powder 100g",
        "Silicone Baking Mats (2 Pack)",
        "USB-C Charging Cable 2m Braided",
        "Cast Iron Skillet 10 inch",
        "Dog Chew Toy Rope Bundle",
        "Phone Case for iPhone 15",
        "Memory Foam Pillow Queen",
        "Ceramic Coffee Mug 12oz Matte Black",
        "Garden Hose Nozzle 8 Patterns",
        "Replacement Vacuum Filters 4-Pack",
        "Scented Soy Candle Lavender",
        "Resistance Bands Set",
        "Leather Wallet RFID Blocking",
        "Baby Teething Ring BPA Free",
        "Hiking Socks Merino 3 Pairs",
        "Acrylic Paint Set 24 Colours",
        "Magnetic Knife Strip 16 inch",
        "Bike Phone Mount Aluminium",
        "Vitamin D3 Gummies 120ct",
    ],
    "de": [
        "Edelstahl Trinkflasche 750 ml",
        "Bambus Schneidebrett 3er Set",
        "Kabellose Kopfhörer",
        "Yogamatte rutschfest 6 mm",
        "LED Schreibtischlampe dimmbar",
        "Kinder Regenjacke Gr. 128",
        "Silikon Backmatten 2er Pack",
        "USB-C Ladekabel 2 m",
        "Gusseisenpfanne 26 cm",
        "Kaffeetasse Keramik schwarz",
        "Duftkerze Lavendel",
        "Fahrradhalterung Handy",
    ],
    "fr": [
        "Gourde en inox 750 ml",
        "Planche à découper en bambou",
        "Écouteurs sans fil",
        "Tapis de yoga antidérapant",
        "Lampe de bureau LED",
        "Veste de pluie enfant 8 ans",
        "Tapis de cuisson en silicone",
        "Câble USB-C 2 m",
        "Poêle en fonte 26 cm",
        "Mug en céramique noir",
        "Bougie parfumée lavande",
        "Support vélo pour téléphone",
    ],
    "it": [
        "Borraccia in acciaio 750 ml",
        "Tagliere in bambù set da 3",
        "Auricolari wireless",
        "Tappetino yoga antiscivolo",
        "Lampada da scrivania LED",
        "Giacca antipioggia bambino",
        "Tappetini da forno in silicone",
        "Cavo USB-C 2 m",
        "Padella in ghisa 26 cm",
        "Tazza in ceramica nera",
        "Candela profumata lavanda",
        "Supporto bici per telefono",
    ],
    "es": [
        "Botella de acero inoxidable 750 ml",
        "Tabla de cortar de bambú",
        "Auriculares inalámbricos",
        "Esterilla de yoga antideslizante",
        "Lámpara de escritorio LED",
        "Chubasquero infantil",
        "Tapetes de silicona para hornear",
        "Cable USB-C 2 m",
        "Sartén de hierro fundido 26 cm",
        "Taza de cerámica negra",
        "Vela aromática de lavanda",
        "Soporte de móvil para bicicleta",
    ],
}
TLDS = {
    "en": ["com", "com", "com", "co.uk", "co.uk", "ca", "com.au", "in", "ie", "sg"],
    "de": ["de"],
    "fr": ["fr", "fr", "com.be"],
    "it": ["it"],
    "es": ["es", "es", "com.mx"],
}
CURRENCY = {
    "com": "${:,.2f}",
    "co.uk": "£{:,.2f}",
    "ca": "CDN$ {:,.2f}",
    "com.au": "A${:,.2f}",
    "in": "₹{:,.2f}",
    "ie": "€{:,.2f}",
    "sg": "S${:,.2f}",
    "com.mx": "MXN {:,.2f}",
}
MONTHS = {
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre "
    "dicembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
    "diciembre",
}
CARRIERS = {
    "en": ["UPS", "USPS", "FedEx", "Royal Mail", "DHL", "Evri", "Canada Post", "Australia Post"],
    "de": ["DHL", "DPD", "Hermes", "GLS", "UPS"],
    "fr": ["Colissimo", "Chronopost", "DPD", "Mondial Relay", "UPS"],
    "it": ["Poste Italiane", "BRT", "GLS", "SDA", "DHL"],
    "es": ["Correos", "SEUR", "MRW", "GLS", "DHL"],
}
STORE_WORDS = [
    "Oak",
    "Pine",
    "River",
    "Summit",
    "Bright",
    "Urban",
    "Cozy",
    "Nordic",
    "Blue",
    "Maple",
    "Golden",
    "Swift",
    "Happy",
    "Green",
    "Coastal",
    "Iron",
    "Little",
    "Prime",
    "Pure",
    "Wild",
]
STORE_KINDS = [
    "Goods",
    "Home",
    "Supply",
    "Trading",
    "Outlet",
    "Co.",
    "Essentials",
    "Gear",
    "Living",
    "Store",
    "Direct",
    "Brands",
]
COMPANY_KINDS = [
    "Ltd",
    "Inc.",
    "LLC",
    "GmbH",
    "Logistics",
    "Packaging",
    "Imports",
    "Textiles",
    "Manufacturing",
]
SC_PATHS = (
    "performance/dashboard",
    "messaging/inbox",
    "orders-v3/order/{order_id}",
    "gp/returns/list",
    "claims/a-to-z",
    "feedback-manager/index.html",
    "payments/dashboard",
    "inventory",
    "fba/inbound-queue",
    "help/hub/reference",
    "performance/account/health",
    "myinventory/",
)


def _date(rnd: random.Random, when: datetime, lang: str, tld: str) -> str:
    if lang == "en":
        if tld == "com":
            return when.strftime("%B %-d, %Y") if rnd.random() < 0.7 else when.strftime("%m/%d/%Y")
        return when.strftime("%-d %B %Y")
    month = MONTHS[lang].split()[when.month - 1]
    if lang == "de":
        return (
            f"{when.day}. {month} {when.year}" if rnd.random() < 0.7 else when.strftime("%d.%m.%Y")
        )
    if lang == "es":
        return f"{when.day} de {month} de {when.year}"
    return f"{when.day} {month} {when.year}"


def _amount(rnd: random.Random, tld: str) -> str:
    value = rnd.choice([rnd.uniform(4, 60), rnd.uniform(20, 250), rnd.uniform(100, 2500)])
    if tld in CURRENCY:
        return CURRENCY[tld].format(value)
    text = f"{value:,.2f}".replace(",", " ").replace(".", ",")
    return f"EUR {text}" if rnd.random() < 0.3 else f"{text} €"


def _order_id(rnd: random.Random) -> str:
    return (
        f"{rnd.choice('1234')}{rnd.randint(0, 99):02d}-{rnd.randint(0, 9999999):07d}-"
        f"{rnd.randint(0, 9999999):07d}"
    )


def _alnum(
    rnd: random.Random, size: int, alphabet: str = string.ascii_uppercase + string.digits
) -> str:
    return "".join(rnd.choice(alphabet) for _ in range(size))


def _person(rnd: random.Random, lang: str) -> tuple[str, str]:
    first = rnd.choice(FIRST[lang].split())
    last = rnd.choice(LAST[lang].split())
    return first, f"{first} {last}"


def _store(rnd: random.Random) -> str:
    return f"{rnd.choice(STORE_WORDS)} {rnd.choice(STORE_KINDS)}"


def _percent(value: float, lang: str) -> str:
    """A percentage as the language writes it: 7.9% (en), 7,9 % (de, fr, es), 7,9% (it)."""
    number = f"{value:g}"
    if lang == "en":
        return f"{number}%"
    number = number.replace(".", ",")
    return f"{number}%" if lang == "it" else f"{number}\u202f%" if lang == "fr" else f"{number} %"


STARS_BY_SEVERITY = {"high": (1, 2), "normal": (3,), "low": (4, 5)}


def star_values(rnd: random.Random, family: Family) -> dict[str, str]:
    """A feedback family's stars follow its severity: 1-2 negative, 3 neutral, 4-5 positive."""
    choices = STARS_BY_SEVERITY.get(family.severity, (1, 2, 3, 4, 5))
    stars = rnd.choice(choices) if family.type == "feedback" else rnd.randint(1, 5)
    return {"stars": str(stars), "star_glyphs": "★" * stars + "☆" * (5 - stars)}


def slot_values(rnd: random.Random, lang: str, sent: datetime) -> dict[str, str]:
    """One mail's worth of consistent slot values (the buyer, the order, the marketplace)."""
    tld = rnd.choice(TLDS[lang])
    buyer_first, buyer_name = _person(rnd, lang)
    if rnd.random() < 0.25:
        buyer_name = f"{buyer_first} {buyer_name.split()[-1][0]}."
    days = rnd.choice([2, 3, 5, 7, 10, 14, 17, 30])
    order_id = _order_id(rnd)
    store = _store(rnd)
    # Metrics where lower is better (ODR, late shipment, cancellation, late response):
    # {rate} is above its {target}, {good_rate} back below it. Valid tracking is the
    # other way round: {tracking_rate} below its {min_target}.
    target = rnd.choice([1.0, 2.5, 4.0, 10.0])
    rate = round(target * rnd.uniform(1.2, 3.0), 1)
    good_rate = round(target * rnd.uniform(0.2, 0.8), 1)
    min_target = rnd.choice([95.0, 98.0])
    tracking_rate = round(min_target - rnd.uniform(2.0, 15.0), 1)
    values = {
        "tld": tld,
        "marketplace": f"Amazon.{tld}",
        "buyer_first": buyer_first,
        "buyer_name": buyer_name,
        "seller_name": rnd.choice([store, _person(rnd, lang)[1], store]),
        "store": store,
        "person": _person(rnd, lang)[1],
        "company": f"{rnd.choice(LAST[lang].split())} {rnd.choice(COMPANY_KINDS)}",
        "order_id": order_id,
        "asin": "B0" + _alnum(rnd, 8),
        "sku": f"{_alnum(rnd, 2, string.ascii_uppercase)}-{_alnum(rnd, 4)}-{rnd.randint(1, 99)}",
        "product": rnd.choice(PRODUCTS[lang]),
        "amount": _amount(rnd, tld),
        "date": _date(rnd, sent - timedelta(days=rnd.randint(0, 20)), lang, tld),
        "deadline_date": _date(rnd, sent + timedelta(days=days), lang, tld),
        "days": str(days),
        "rate": _percent(rate, lang),
        "good_rate": _percent(good_rate, lang),
        "target": _percent(target, lang),
        "tracking_rate": _percent(tracking_rate, lang),
        "min_target": _percent(min_target, lang),
        "tracking": rnd.choice(
            [
                "1Z" + _alnum(rnd, 16),
                _alnum(rnd, 2) + str(rnd.randint(10**8, 10**9)) + "GB",
                str(rnd.randint(10**11, 10**12)),
            ]
        ),
        "carrier": rnd.choice(CARRIERS[lang]),
        "quantity": str(rnd.choice([1, 1, 2, 3, 5, 12, 24, 48, 150, 320])),
        "alias": _alnum(rnd, 14, string.ascii_lowercase + string.digits) + rnd.choice("ghkmnp"),
    }
    path = rnd.choice(SC_PATHS).format(order_id=order_id)
    values["sc_link"] = f"https://sellercentral.amazon.{tld}/{path}"
    return values


def fill(template: str, values: dict[str, str], rnd: random.Random) -> str:
    """Pick every ``[[a|b]]`` alternative (innermost first, so they nest), then fill slots."""
    text, picked = template, 1
    while picked:
        text, picked = CHOICE.subn(lambda m: rnd.choice(m.group(1).split("|")), text)
    return SLOT.sub(lambda m: values.get(m.group(1), m.group(0)), text)


# --- HTML layouts -----------------------------------------------------------------

FOOTERS = {
    "en": [
        "Was this email helpful? Yes | No",
        "Thank you for selling on Amazon.\nSeller Central | Help | Seller Forums",
        "Please do not reply to this email. This mailbox is not monitored.",
        "To change your notification preferences, go to Seller Central > Settings > "
        "Notification Preferences. Unsubscribe",
        "© {year} Amazon.com, Inc. or its affiliates. All rights reserved. "
        "Amazon.com, 410 Terry Avenue N., Seattle, WA 98109-5210",
        "This email was sent from a notification-only address that cannot accept incoming email.",
    ],
    "de": [
        "War diese E-Mail hilfreich? Ja | Nein",
        "Vielen Dank, dass Sie bei Amazon verkaufen.\nSeller Central | Hilfe | Verkäuferforen",
        "Bitte antworten Sie nicht auf diese E-Mail.",
        "Benachrichtigungseinstellungen ändern: Seller Central > Einstellungen. Abmelden",
        "© {year} Amazon.com, Inc. oder Tochtergesellschaften. Amazon EU S.à r.l., Luxemburg",
    ],
    "fr": [
        "Cet e-mail vous a-t-il été utile ? Oui | Non",
        "Merci de vendre sur Amazon.\nSeller Central | Aide | Forums des vendeurs",
        "Merci de ne pas répondre à cet e-mail.",
        "Pour modifier vos préférences de notification : Seller Central > Paramètres. "
        "Se désabonner",
        "© {year} Amazon.com, Inc. ou ses filiales. Amazon EU S.à r.l., Luxembourg",
    ],
    "it": [
        "Questa e-mail ti è stata utile? Sì | No",
        "Grazie per vendere su Amazon.\nSeller Central | Aiuto | Forum dei venditori",
        "Ti preghiamo di non rispondere a questa e-mail.",
        "Per modificare le preferenze di notifica: Seller Central > Impostazioni. Annulla "
        "l'iscrizione",
        "© {year} Amazon.com, Inc. o società affiliate. Amazon EU S.à r.l., Lussemburgo",
    ],
    "es": [
        "¿Te ha resultado útil este correo? Sí | No",
        "Gracias por vender en Amazon.\nSeller Central | Ayuda | Foros de vendedores",
        "Por favor, no respondas a este correo electrónico.",
        "Para cambiar tus preferencias de notificación: Seller Central > Configuración. "
        "Darse de baja",
        "© {year} Amazon.com, Inc. o sus filiales. Amazon EU S.à r.l., Luxemburgo",
    ],
}
BAR_COLOURS = ("#232f3e", "#131921", "#37475a", "#ffffff")
FIELD_LINE = re.compile(r"^([A-Z][A-Za-zÀ-ÿ .'/-]{1,38}):\s+(\S.{0,120})$")
FROM_LINE = re.compile(r"^(.*?)<([^>]*)>$")
URL_LINE = re.compile(r"^(?:(.{2,60}?):?\s+)?(https?://\S+)$")


def _paragraph_html(par: str) -> str:
    lines = [line.strip() for line in par.strip().splitlines() if line.strip()]
    if lines and all(FIELD_LINE.match(line) for line in lines):
        rows = "".join(
            f'<tr><td style="color:#565959;padding:4px 12px 4px 0">{html.escape(m.group(1))}</td>'
            f"<td><b>{html.escape(m.group(2))}</b></td></tr>"
            for m in (FIELD_LINE.match(line) for line in lines)
            if m
        )
        return f'<table cellpadding="0" cellspacing="0" style="margin:8px 0">{rows}</table>'
    if len(lines) == 1 and (m := URL_LINE.match(lines[0])):
        label = html.escape(m.group(1) or "View in Seller Central")
        return (
            f'<table cellpadding="0" cellspacing="0"><tr><td style="background:#ffd814;'
            f'border-radius:8px;padding:8px 18px"><a href="{html.escape(m.group(2))}" '
            f'style="color:#0f1111;text-decoration:none">{label}</a></td></tr></table>'
        )
    return "<p>" + "<br>\n".join(html.escape(line) for line in lines) + "</p>"


def render_html(body: str, subject: str, footer: str, rnd: random.Random, branded: bool) -> str:
    """A notice layout: header bar, paragraphs, field tables, a button, a footer."""
    paragraphs = "\n".join(_paragraph_html(p) for p in re.split(r"\n\s*\n", body) if p.strip())
    bar = rnd.choice(BAR_COLOURS)
    ink = "#0f1111" if bar == "#ffffff" else "#ffffff"
    header = (
        f'<tr><td style="background:{bar};color:{ink};padding:12px 20px;font-size:18px">'
        f"<b>amazon</b> {rnd.choice(['seller central', 'services', ''])}</td></tr>"
        if branded
        else ""
    )
    title = f'<h2 style="font-size:17px">{html.escape(subject)}</h2>' if rnd.random() < 0.4 else ""
    foot = "".join(f"<p>{html.escape(line)}</p>" for line in footer.splitlines() if line.strip())
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        '<body style="font-family:Arial,sans-serif;font-size:14px;color:#0f1111">'
        '<table width="100%" cellpadding="0" cellspacing="0" style="max-width:640px">'
        f'{header}<tr><td style="padding:16px 20px">{title}\n{paragraphs}</td></tr>'
        f'<tr><td style="padding:12px 20px;font-size:11px;color:#565959">{foot}</td></tr>'
        "</table></body></html>"
    )


def render_text(body: str, footer: str) -> str:
    return f"{body.strip()}\n\n{footer.strip()}\n" if footer else f"{body.strip()}\n"


# --- rendering mail ---------------------------------------------------------------

BASE_DATE = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)


def _seed(family: str) -> int:
    return int.from_bytes(hashlib.sha256(family.encode()).digest()[:8], "big")


def _clean_address(address: str) -> str:
    """Slot values such as a company name may carry spaces or accents: fold to a valid address."""
    local, _, domain = address.strip().rpartition("@")
    local = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode().lower()
    domain = unicodedata.normalize("NFKD", domain).encode("ascii", "ignore").decode().lower()
    local = re.sub(r"[^a-z0-9._+-]", "", local.replace(" ", ".")).strip(".") or "info"
    domain = re.sub(r"[^a-z0-9.-]", "", domain.replace(" ", "-")).strip(".-")
    return re.sub(r"\.{2,}", ".", f"{local}@{domain}")


def _sender(raw: str, genuine: bool, tld: str) -> tuple[str, str]:
    """Display name and address of a From template; Amazon mail follows the marketplace."""
    match = FROM_LINE.match(raw.strip())
    name, address = (match.group(1), match.group(2)) if match else ("", raw)
    name = name.strip().strip('"').strip()
    address = _clean_address(address)
    if genuine and address.endswith("@amazon.com") and tld != "com":
        address = address[: -len("amazon.com")] + f"amazon.{tld}"
    return name, address


def _footer(family: Family, rnd: random.Random, amazon: bool, year: int) -> str:
    # A relayed buyer message carries the buyer's words, not Seller Central's footers.
    if not (family.footer and amazon) or family.type == "buyer_message":
        return ""
    picks = rnd.sample(FOOTERS[family.lang], k=rnd.randint(1, 3))
    return "\n".join(picks).replace("{year}", str(year))


def _set_body(
    msg: EmailMessage, family: Family, text: str, html_body: str, cte: str, boundary: str
) -> None:
    if family.format == "text":
        msg.set_content(text, subtype="plain", charset="utf-8", cte=cte)
    elif family.format == "html":
        msg.set_content(html_body, subtype="html", charset="utf-8", cte=cte)
    else:
        msg.set_content(text, subtype="plain", charset="utf-8", cte=cte)
        msg.add_alternative(html_body, subtype="html", charset="utf-8", cte=cte)
        # The email package draws boundaries from the global random state; one drawn from
        # the family's seed keeps a re-render byte-identical (and the git history small).
        msg.set_boundary(f"=_{boundary}")


def render_mail(family: Family, index: int, rnd: random.Random) -> bytes:
    """One raw RFC 5322 message of ``family``."""
    sent = BASE_DATE + timedelta(days=rnd.randint(0, 500), seconds=rnd.randint(0, 86399))
    values = slot_values(rnd, family.lang, sent) | star_values(rnd, family)
    name, address = _sender(
        fill(rnd.choice(family.senders), values, rnd), family.genuine, values["tld"]
    )
    domain = address.rpartition("@")[2].lower()
    amazon = taxonomy.is_amazon_domain(domain)
    subject = " ".join(fill(rnd.choice(family.subjects), values, rnd).split())
    body = fill(rnd.choice(family.bodies), values, rnd)
    footer = _footer(family, rnd, amazon, sent.year)
    msg = EmailMessage()
    if family.genuine:
        msg["Authentication-Results"] = (
            f"{AUTHSERV_ID}; dkim=pass header.d={domain}; spf=pass smtp.mailfrom={domain}; "
            f"dmarc=pass (p=QUARANTINE) header.from={domain}"
        )
    msg["From"] = Address(display_name=name, addr_spec=address) if name else address
    msg["To"] = f"{values['seller_name']} <{values['alias'][:8]}@seller-mail.example>"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(sent)
    msg["Message-ID"] = f"<{_alnum(rnd, 20, '0123456789abcdef')}.{index}@{domain or 'localhost'}>"
    for key, value in family.headers.items():
        msg[key] = fill(value, values, rnd)
    cte = family.encoding if family.encoding != "random" else rnd.choice(ENCODINGS[:3])
    text = render_text(body, footer)
    html_body = render_html(body, subject, footer, rnd, amazon)
    _set_body(msg, family, text, html_body, cte, _alnum(rnd, 24, "0123456789abcdef"))
    return msg.as_bytes(policy=SMTP)


def render_family(family: Family) -> Iterator[bytes]:
    """``family.count`` mails, the same ones on every run."""
    rnd = random.Random(_seed(family.family))
    for index in range(family.count):
        yield render_mail(family, index, rnd)


def render_rows(corpus_dir: Path) -> Iterator[tuple[LabelledMail, bytes]]:
    """Every family's mail, rendered in memory, with the row ``labels.csv`` would give it."""
    for fam in load_families(corpus_dir):
        for index, raw in enumerate(render_family(fam)):
            path = f"mail/{fam.lang}/{fam.family}/{index:04d}.eml"
            yield LabelledMail(path, fam.type, fam.severity, fam.family, fam.lang), raw


def render_corpus(corpus_dir: Path) -> list[LabelledMail]:
    """Render every family into ``mail/<lang>/<family>/NNNN.eml`` and write ``labels.csv``.

    Training renders in memory; this writes the mail out for the benchmarks and for
    reading. Neither is kept in the repository.
    """
    families = load_families(corpus_dir)  # refuse a bad family before deleting anything
    mail_dir = corpus_dir / "mail"
    if mail_dir.exists():
        shutil.rmtree(mail_dir)
    rows: list[LabelledMail] = []
    for fam in families:
        (mail_dir / fam.lang / fam.family).mkdir(parents=True)
    for row, raw in render_rows(corpus_dir):
        (corpus_dir / row.path).write_bytes(raw)
        rows.append(row)
    write_labels(corpus_dir / "labels.csv", rows)
    return rows


def write_labels(path: Path, rows: Sequence[LabelledMail]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "type", "severity", "family", "lang"])
        for row in rows:
            writer.writerow([row.path, row.type, row.severity, row.family, row.lang])


def read_labels(corpus_dir: Path) -> list[LabelledMail]:
    """The rows of ``labels.csv``; labels are checked against the taxonomy."""
    path = corpus_dir / "labels.csv"
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = [LabelledMail(**row) for row in csv.DictReader(fh)]
    except (OSError, TypeError, csv.Error) as exc:
        raise CorpusError(f"{path}: cannot read labels: {exc}") from exc
    for number, row in enumerate(rows, start=2):
        if row.severity not in taxonomy.ALLOWED_SEVERITIES.get(row.type, ()):
            raise CorpusError(f"{path}:{number}: bad label {row.type}/{row.severity}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m triage.corpus", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--corpus", type=Path, default=default_corpus_dir(), help="corpus folder")
    args = parser.parse_args(argv)
    try:
        rows = render_corpus(args.corpus)
    except CorpusError as exc:
        print(f"triage: {exc}", file=sys.stderr)
        return 2
    print(f"rendered {len(rows)} mails into {args.corpus / 'mail'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
