"""What a person looks for in seller mail, as concept tokens in five languages.

A word n-gram model learns the wording of the templates it was trained on; a person
reading a new template looks for a handful of *signals* instead: was something
suspended or reinstated, is a response required, was a claim decided for or against the
seller, how many stars did the buyer give. This module names those signals with a small
hand-written lexicon (English, German, French, Italian, Spanish) and turns a mail into
tokens such as ``c:suspended`` or ``s:stars_low``. Because the lexicon, not one
template, names a concept, the tokens carry over to wording and languages the model
never saw.

Patterns are matched on lower-cased text with accents stripped, so ``zurückgezogen``
is written ``zuruckgezogen`` and ``désactivé`` is ``desactive``. Each entry says why the
concept matters for the taxonomy (``/docs`` severity policy), not what the regex does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

# Readable text beyond this rarely changes what a notice is about (footers, legal text).
SIGNAL_CAP = 1500

# concept -> alternatives (accent-free, lower case). Order does not matter.
LEXICON: dict[str, tuple[str, ...]] = {
    # --- account health: what is at stake -------------------------------------------
    # Deactivation or suspension is critical whatever metric led to it.
    "suspended": (
        r"konto(sperrung|deaktivierung|schliessung)",
        r"verkauferkonto (wurde |ist )?(gesperrt|deaktiviert)",
        r"account (has been |was |is )?(suspended|deactivated|blocked|closed|disabled)",
        r"konto (wurde |ist )?(gesperrt|deaktiviert|geschlossen)",
        r"compte (a ete |est )?(bloque|ferme|desactive|suspendu)",
        r"account (e stato |e )?(bloccato|chiuso|sospeso|disattivato)",
        r"cuenta (ha sido |esta )?(bloqueada|cerrada|suspendida|desactivada)",
        r"suspend",
        r"deactivat",
        r"selling privileges (have been |were |are )?(removed|revoked|withdrawn)",
        r"removed your selling privileges",
        r"can no longer sell",
        r"deaktiviert",
        r"gesperrt",
        r"sperrung",
        r"verkaufsberechtigung\w* (wurde |wurden )?(entzogen|entfernt|aufgehoben)",
        r"desactive",
        r"suspendu",
        r"suspension",
        r"privileges de vente (ont ete )?(retires|supprimes|revoques)",
        r"disattivat",
        r"sospes[oaei]\b",
        r"sospensione",
        r"privilegi di vendita (sono stati )?(rimossi|revocati)",
        r"desactivad",
        r"suspendid",
        r"privilegios de venta (han sido )?(retirados|eliminados|revocados)",
    ),
    # An account "at risk" is critical before anything has been removed.
    "at_risk": (
        r"at risk",
        r"risk of (deactivation|suspension|losing)",
        r"(could|may|will) (lead to|result in) (the )?(deactivation|suspension)",
        r"gefahrdet",
        r"in gefahr",
        r"risiko",
        r"\brisque\b",
        r"en danger",
        r"a rischio",
        r"\brischio\b",
        r"en riesgo",
        r"\briesgo\b",
    ),
    # Reinstatement ends an emergency: normal, not critical.
    "reinstated": (
        r"reinstat",
        r"reactivated",
        r"(has been|have been|was|were) restored",
        r"can (now )?sell again",
        r"reaktiviert",
        r"wiederhergestellt",
        r"wieder (freigeschaltet|verkaufen|aktiv)",
        r"reactive",
        r"retabli",
        r"restaure",
        r"(a nouveau|de nouveau) vendre",
        r"riattivat",
        r"ripristinat",
        r"(nuovamente|di nuovo) vendere",
        r"reactivad",
        r"restablecid",
        r"volver a vender",
        r"puedes vender de nuevo",
    ),
    # Buyer messages left unanswered: the late-response warning (account health, high).
    "unanswered": (
        r"unanswered",
        r"(did not|didn.t) (get|receive) an? (answer|response|reply)",
        r"waited more than \d+ hours",
        r"not answered",
        r"nicht (innerhalb|rechtzeitig) [\w ]{0,20}beantwortet",
        r"unbeantwortet",
        r"sans reponse",
        r"senza risposta",
        r"non hanno ricevuto risposta",
        r"sin respuesta",
        r"no (han )?recibido respuesta",
    ),
    # Verification with a deadline is critical: missing it suspends the account.
    "verification": (
        r"verif",
        r"identity",
        r"confirm your (identity|business|information|details)",
        r"identitat",
        r"nachweis",
        r"identite",
        r"justificatif",
        r"identita",
        r"identidad",
        r"documentacion",
    ),
    "deadline": (
        r"deadline",
        r"within \d+ (business |calendar )?(days|hours)",
        r"no later than",
        r"\bby (the end of|\w+ \d{1,2},|\d{1,2} \w+ \d{4}|\d{1,2}/\d{1,2})",
        r"\bfrist",
        r"innerhalb von \d+",
        r"bis (spatestens|zum)",
        r"spatestens",
        r"\bdelai",
        r"dans les \d+",
        r"sous \d+ jours",
        r"au plus tard",
        r"avant le \d",
        r"\bentro (il |le )?\d",
        r"scadenza",
        r"\bplazo",
        r"antes del? \d",
        r"dentro de (los )?\d+",
        r"a mas tardar",
    ),
    # A performance metric by name: account health, not an order or a claim.
    "metric": (
        r"quote (mangelhafter|verspateter|gultiger|der|von)",
        r"stornoquote",
        r"respuestas? tardias?",
        r"reponses? tardives?",
        r"risposte in ritardo",
        r"verspatete[nr]? antworten",
        r"antwortquote",
        r"order defect rate",
        r"\bodr\b",
        r"late (shipment|dispatch) rate",
        r"cancel+ation rate",
        r"valid tracking rate",
        r"late response",
        r"response time",
        r"account health rating",
        r"\bahr\b",
        r"performance (metric|target|notification)",
        r"(auftrags|bestell)mangelquote",
        r"verspatungsquote",
        r"(verspatete[nr]? )?versand\w*quote",
        r"storn\w*quote",
        r"stornierungsrate",
        r"sendungsverfolgung\w*quote",
        r"nachverfolgungsrate",
        r"antwortzeit",
        r"reaktionszeit",
        r"kontozustand",
        r"taux de (defaut|defauts|commandes defectueuses)",
        r"taux d.expeditions? en retard",
        r"taux d.annulation",
        r"taux de suivi",
        r"temps de reponse",
        r"sante du compte",
        r"tasso di (difettosita|ordini difettosi)",
        r"tasso di spediz\w+ in ritardo",
        r"tasso di (cancellazione|annullamento)",
        r"tracciamento valido",
        r"tempo di risposta",
        r"stato (di salute )?dell.account",
        r"tasa de (defectos|pedidos defectuosos)",
        r"tasa de envios? (con retraso|tardio)",
        r"tasa de cancelacion",
        r"seguimiento valido",
        r"tiempo de respuesta",
        r"estado de la cuenta",
    ),
    # A metric outside its target is high; combined with "suspended" it is critical.
    "above_target": (
        r"above (the |our |its )?(target|threshold|limit)",
        r"exceed",
        r"higher than (the |our )?(target|threshold)",
        r"(does|did) not meet",
        r"fails? to meet",
        r"below (the |our )?(target|threshold|required)",
        r"outside (of )?(the |our )?target",
        r"uber (dem |unserem |der )?(zielwert|ziel|grenzwert|schwellenwert|vorgabe)",
        r"uberschreit",
        r"nicht (erfullt|eingehalten)",
        r"unter (dem |unserem )?(zielwert|ziel)",
        r"au.dessus de",
        r"depasse",
        r"superieur a (notre|l.objectif|la cible)",
        r"n.atteint pas",
        r"en dessous de (notre |l.)?objectif",
        r"sopra (l.|il |la )?(obiettivo|soglia)",
        r"\bsupera",
        r"superiore (all.|al |alla )?(obiettivo|soglia)",
        r"non (raggiunge|rispetta)",
        r"al di sotto (dell.|del )?(obiettivo|soglia)",
        r"por encima de",
        r"\bsupera",
        r"no (cumple|alcanza)",
        r"por debajo del? (objetivo|umbral)",
    ),
    # A metric back under its target: improved, and not above target any more.
    "back_in_target": (
        r"now (within|below|under|meets|meeting)",
        r"back (within|below|under|in|on|to)",
        r"wieder (unter|im|innerhalb)",
        r"(repasse|de nouveau|a nouveau) (sous|dans)",
        r"est repasse sous",
        r"tornat[oa] (sotto|nei|entro|nel)",
        r"vuelve a estar (por debajo|dentro|en)",
        r"de nuevo (por debajo|dentro)",
    ),
    # An improvement or a metric back in target is normal, never critical.
    "improved": (
        r"improved",
        r"has improved",
        r"back (within|in|on|to) (target|track|the target)",
        r"now (within|meets|below|meeting)",
        r"\bhealthy\b",
        r"good standing",
        r"congratulation",
        r"great job",
        r"well done",
        r"verbessert",
        r"wieder im (zielbereich|ziel|grunen)",
        r"gluckwunsch",
        r"gut gemacht",
        r"ameliore",
        r"s.est amelior",
        r"(a nouveau|de nouveau) dans",
        r"felicitations",
        r"bravo",
        r"migliorat",
        r"di nuovo (nei|entro|nel)",
        r"congratulazioni",
        r"complimenti",
        r"mejorad",
        r"ha mejorado",
        r"de nuevo dentro",
        r"enhorabuena",
        r"felicidades",
        r"felicitaciones",
    ),
    # An appeal accepted or an issue resolved lowers the stakes: normal.
    "resolved": (
        r"resolved",
        r"(appeal|request) (was |has been )?accepted",
        r"(we )?accepted (it|your appeal)",
        r"no longer counts?",
        r"removed the violation",
        r"gelost",
        r"(einspruch|antrag) [\w ]{0,20}(angenommen|akzeptiert)",
        r"resolu",
        r"(appel|recours) [\w ]{0,20}accepte",
        r"risolt",
        r"ricorso [\w ]{0,20}accolto",
        r"resuelt",
        r"apelacion [\w ]{0,20}aceptada",
    ),
    "plan_of_action": (
        r"plan of action",
        r"\bappeal",
        r"(aktions|massnahmen)plan",
        r"einspruch",
        r"plan d.action",
        r"faire appel",
        r"piano d.azione",
        r"ricorso",
        r"plan de accion",
        r"apelar",
        r"apelacion",
    ),
    # Nothing to do is what separates a warning (high) from a removal (critical),
    # and a closed claim (normal) from one that needs an answer (critical).
    "no_action": (
        r"no action (was|has been) taken",
        r"keine massnahmen ergriffen",
        r"aucune mesure n.a ete prise",
        r"nessun provvedimento",
        r"nessuna misura",
        r"no se ha tomado ninguna medida",
        r"for now",
        r"vorerst",
        r"pour le moment",
        r"per ora",
        r"por ahora",
        r"no (further )?action (is |will be )?(needed|required|necessary)",
        r"(you )?(do not|don.t) need to (do anything|take (any )?action)",
        r"remains? (active|available|live)",
        r"has not been removed",
        r"keine (weiteren )?(massnahmen|schritte|aktion)",
        r"nichts (weiter )?(zu )?tun",
        r"bleibt (aktiv|verfugbar|online)",
        r"aucune action",
        r"rien a faire",
        r"reste (active|disponible|en ligne)",
        r"nessuna azione",
        r"non (devi|e necessario) fare nulla",
        r"resta (attiva|disponibile|online)",
        r"ninguna accion",
        r"no (tienes|es necesario) (que )?hacer nada",
        r"sigue (activa|disponible)",
    ),
    # "No listing has been removed yet": a warning (high), not a removal (critical).
    "not_removed": (
        r"(no|none of your) [\w ]{0,25}(has|have) (yet )?been (removed|deactivated|blocked)",
        r"not (yet )?(been )?(removed|deactivated|blocked)",
        r"(noch )?keine [\w ]{0,25}(entfernt|deaktiviert|gesperrt)",
        r"nicht (entfernt|deaktiviert|gesperrt)",
        r"aucune? [\w ]{0,25}(n.a|n.ont) (encore )?ete (supprime|retire|desactive|bloque)",
        r"(n.a|n.ont) pas (encore )?ete (supprime|retire|desactive|bloque)",
        r"nessun[ao]? [\w ]{0,25}(e|sono) (ancora )?stat[aieo] (rimoss|disattivat|bloccat)",
        r"non (e|sono) (ancora )?stat[aieo] (rimoss|disattivat|bloccat)",
        r"ningun[ao]? [\w ]{0,25}(ha|han) sido (eliminad|retirad|desactivad|bloquead)",
        r"no (se )?(ha|han) (sido )?(eliminad|retirad|desactivad|bloquead)",
    ),
    # A removal that may come later is a threat inside a warning, not a removal.
    "threat": (
        r"(could|may|can|will|might) (result in|lead to|cause)",
        r"(konnen|kann|konnte|wird) (dazu fuhren|zur)",
        r"(peut|peuvent|pourrait|pourraient) (entrainer|conduire)",
        r"(puo|possono|potrebbe|potrebbero) (comportare|portare)",
        r"(puede|pueden|podria|podrian) (provocar|conllevar|dar lugar|llevar)",
    ),
    # "Your listings may be removed": a threat, so the removal is not (yet) a fact.
    "may_be_removed": (
        r"(may|could|might|will|can) (also )?be (removed|deactivated|suspended|blocked|suppressed)",
        r"(konnen|kann|konnten?|wird|werden) [\w ]{0,30}(entfernt|deaktiviert|gesperrt) werden",
        r"(peut|peuvent|pourrait|pourraient) etre (supprime|retire|desactive|bloque)",
        r"(puo|possono|potrebbe|potrebbero) essere (rimoss|disattivat|bloccat|sospes)",
        r"(puede|pueden|podria|podrian) ser (eliminad|retirad|desactivad|bloquead)",
    ),
    "urgent": (
        r"urgent",
        r"immediate",
        r"action required",
        r"act now",
        r"dringend",
        r"sofort",
        r"umgehend",
        r"handlungsbedarf",
        r"immediatement",
        r"action requise",
        r"immediatamente",
        r"azione richiesta",
        r"inmediata",
        r"accion requerida",
    ),
    "final_notice": (
        r"final (notice|reminder|warning)",
        r"last (reminder|chance|warning)",
        r"letzte (mahnung|erinnerung|warnung)",
        r"dernier (avertissement|rappel)",
        r"ultimo (avviso|promemoria|avvertimento)",
        r"ultim[oa] (aviso|advertencia|recordatorio)",
    ),
    # --- claims and chargebacks -----------------------------------------------------
    "atoz": (
        r"a-to-z",
        r"a to z",
        r"a-z (guarantee|garantie|claim)",
        r"garantie de a a z",
        r"a-bis-z",
        r"a bis z",
        r"dalla a alla z",
        r"garanzia",
        r"garantia de la a a la z",
        r"safe-t",
        r"\bsafet\b",
    ),
    "claim": (
        r"\bclaim",
        r"garantieantrag",
        r"\bantrag",
        r"reclamation",
        r"reclamo",
        r"reclamacion",
        r"\bdispute",
    ),
    # A claim just filed needs the seller's answer: critical.
    "claim_filed": (
        r"claim (has been |was )?(filed|opened|received|submitted|made)",
        r"(filed|opened|submitted) (a|an|the) [\w -]{0,30}claim",
        r"new [\w -]{0,20}claim",
        r"antrag (ist )?(eingegangen|gestellt|eroffnet|erhalten)",
        r"hat (einen )?[\w -]{0,25}antrag (gestellt|eingereicht)",
        r"neue[rn]? [\w-]{0,20}antrag",
        r"reclamation (a ete )?(deposee|ouverte|recue|soumise)",
        r"a (depose|ouvert|soumis) une reclamation",
        r"nouvelle reclamation",
        r"reclamo (e stato )?(aperto|presentato|ricevuto)",
        r"ha (aperto|presentato) un reclamo",
        r"nuovo reclamo",
        r"reclamacion (ha sido )?(presentada|abierta|recibida)",
        r"ha (presentado|abierto) una reclamacion",
        r"nueva reclamacion",
    ),
    # Amazon asks for more evidence: a response is due, and any closure is only a threat.
    "info_needed": (
        r"(needs?|requires?) (more|additional|further) (information|evidence|documents|proof)",
        r"(please )?upload",
        r"(benotigen|brauchen) wir (weitere|zusatzliche)",
        r"weitere (nachweise|informationen|unterlagen|angaben)",
        r"laden sie [\w ]{0,60}hoch",
        r"(informations|justificatifs|documents) (supplementaires|complementaires)",
        r"(televersez|telechargez|joignez)",
        r"ulteriori (informazioni|prove|documenti)",
        r"carica(re)? [\w ]{0,30}(document|prov|foto|fattur)",
        r"(mas informacion|informacion adicional|pruebas adicionales|documentacion adicional)",
        r"sube [\w ]{0,30}(document|prueba|foto|factura)",
    ),
    "response_required": (
        r"respond (to|within|by|before)",
        r"please respond",
        r"(your )?response (is )?(required|needed)",
        r"must respond",
        r"provide (the |us with )?(following|information|details|tracking|proof)",
        r"reply within",
        r"we need (more |additional )?information",
        r"(submit|send) (your|a) (response|reply)",
        r"antworten sie",
        r"stellungnahme",
        r"bitte (reagieren|antworten)",
        r"(informationen|angaben) (an|bereit|erforderlich|benotigt|ubermitteln)",
        r"reagieren sie",
        r"veuillez repondre",
        r"repondre (dans|avant|sous|a cette)",
        r"reponse (est )?(requise|necessaire|attendue)",
        r"(fournir|fournissez|transmettez)",
        r"\brispondi",
        r"rispondere entro",
        r"risposta (e )?(richiesta|necessaria)",
        r"fornisci",
        r"fornire (le |ulteriori )?informazioni",
        r"\bresponde\b",
        r"responder (en|antes|dentro)",
        r"respuesta (es )?(necesaria|requerida)",
        r"proporciona",
        r"facilita(r|nos)? (la )?informacion",
    ),
    # A decision for the seller, a closure or a withdrawal: normal.
    "decided_favour": (
        r"in your favou?r",
        r"zu ihren gunsten",
        r"en votre faveur",
        r"a (tuo|vostro|suo) favore",
        r"a (tu|su) favor",
    ),
    "closed_withdrawn": (
        r"\bclosed\b",
        r"withdrawn",
        r"withdrew",
        r"zuruckgezogen",
        r"geschlossen",
        r"retiree",
        r"cloturee",
        r"(a ete )?fermee",
        r"ritirat[oa]",
        r"\bchiuso\b",
        r"retirada",
        r"\bcerrad[oa]",
    ),
    "no_impact": (
        r"no (negative )?impact",
        r"(will|does) not (affect|impact|count against)",
        r"not be (charged|debited|held responsible)",
        r"keine auswirkung",
        r"nicht belastet",
        r"ohne auswirkung",
        r"aucun impact",
        r"pas d.impact",
        r"ne sera pas (debite|preleve)",
        r"sans incidence",
        r"nessun impatto",
        r"non (sara|verra) addebitat",
        r"ningun impacto",
        r"sin impacto",
        r"no se (te |le )?(cobrara|cargara)",
    ),
    # Granted to the buyer, debited from the seller: decided against the seller, high.
    "against_seller": (
        r"granted",
        r"in favou?r of the (buyer|customer)",
        r"decided against",
        r"against you",
        r"debited",
        r"deducted",
        r"funded by (you|the seller)",
        r"(you are|you were|seller is) (responsible|liable)",
        r"charged to your account",
        r"zugunsten des (kaufers|kunden)",
        r"gegen sie",
        r"belastet",
        r"abgebucht",
        r"stattgegeben",
        r"en faveur de l.(acheteur|client)",
        r"accordee",
        r"\bdebite",
        r"preleve",
        r"contre vous",
        r"a favore dell.(acquirente|cliente)",
        r"\bconcess",
        r"accolt",
        r"addebitat",
        r"a tuo carico",
        r"a favor del (comprador|cliente)",
        r"concedid",
        r"\bcargad[oa]",
        r"en tu contra",
        r"a tu cargo",
    ),
    # Amazon reimbursed or approved the seller's own claim (SAFE-T): decided for the seller.
    "approved": (
        r"approved\b(?<!not approved)(?<!not been approved)",
        r"reimbursed (you|to you)",
        r"credited to your account",
        r"good news",
        r"genehmigt",
        r"gutgeschrieben",
        r"approuve",
        r"credite sur votre compte",
        r"approvat",
        r"accreditat",
        r"aprobad",
        r"abonad[oa] en tu cuenta",
    ),
    # A request of the seller's refused: against the seller.
    "denied": (
        r"denied",
        r"not (been )?approved",
        r"unable to reimburse",
        r"(request|claim|appeal) (was |has been )?(rejected|refused)",
        r"abgelehnt",
        r"nicht genehmigt",
        r"refusee",
        r"rejetee",
        r"rifiutat",
        r"respint",
        r"rechazad",
        r"denegad",
    ),
    # Amazon says it has already taken something down (as opposed to a warning).
    "action_taken": (
        r"(we|amazon) (have |has )?(removed|deactivated|blocked|suppressed|taken down|closed)",
        r"(has|have) been (removed|deactivated|blocked|suppressed|taken down)",
        r"(was|were) (removed|deactivated|blocked|suppressed|taken down)",
        r"(wurde|wurden|haben wir) [\w ]{0,30}(entfernt|deaktiviert|gesperrt|blockiert)",
        r"(a|ont|avons) ete (supprime|retire|desactive|bloque)",
        r"nous avons (supprime|retire|desactive|bloque)",
        r"(e|sono) stat[aieo] (rimoss|disattivat|bloccat)",
        r"abbiamo (rimosso|disattivato|bloccato)",
        r"(ha|han) sido (eliminad|retirad|desactivad|bloquead)",
        r"hemos (eliminado|retirado|desactivado|bloqueado)",
    ),
    "chargeback": (
        r"(kreditkarten|lastschrift)ruckbuchung",
        r"chargeback",
        r"charge-back",
        r"card ?issuer",
        r"disputed (the |a )?(charge|transaction)",
        r"ruckbuchung",
        r"kartenausgeber",
        r"retrofacturation",
        r"retro-facturation",
        r"contestation bancaire",
        r"riaddebito",
        r"devolucion de cargo",
        r"contracargo",
        r"emisor de la tarjeta",
    ),
    # --- policy -----------------------------------------------------------------------
    # A listing taken down (critical for policy, normal when data is missing).
    "listing_removed": (
        r"(listing|asin|product|offer|item)s? [\w ,.'-]{0,40}"
        r"(removed|deactivated|blocked|suppressed|taken down|delisted)",
        r"(removed|deactivated|blocked|suppressed) [\w ]{0,20}(listing|asin|product|offer)",
        r"(angebot|artikel|listing|produkt|asin)\w* [\w ,.'-]{0,40}"
        r"(entfernt|deaktiviert|gesperrt|blockiert|unterdruckt)",
        r"(offre|annonce|produit|fiche|asin)s? [\w ,.'-]{0,40}(supprime|retire|desactive|bloque)",
        r"(offert|inserzion|prodott|asin)\w* [\w ,.'-]{0,40}(rimoss|disattivat|bloccat|sospes)",
        r"(oferta|anuncio|producto|listing|asin)s? [\w ,.'-]{0,40}"
        r"(eliminad|retirad|desactivad|bloquead|suprimid)",
    ),
    "policy_reason": (
        r"polic",
        r"violat",
        r"prohibited",
        r"restricted",
        r"counterfeit",
        r"inauthentic",
        r"authenticity",
        r"(product )?safety",
        r"dangerous goods",
        r"price gouging",
        r"fair pricing",
        r"richtlinie",
        r"verstoss",
        r"verboten",
        r"eingeschrankt",
        r"produktsicherheit",
        r"faelschung|falschung",
        r"politique",
        r"regles?\b",
        r"violation",
        r"interdit",
        r"restreint",
        r"contrefa",
        r"authenticite",
        r"securite",
        r"violazione",
        r"vietat",
        r"limitat",
        r"contraffa",
        r"autenticita",
        r"sicurezza",
        r"politica",
        r"normas",
        r"infraccion",
        r"incumpl",
        r"prohibid",
        r"restringid",
        r"falsific",
        r"autenticidad",
        r"seguridad",
    ),
    # Suppressed for missing data is an inventory chore, not a policy action.
    "missing_data": (
        r"missing",
        r"incomplete",
        r"required (attribute|information|field)",
        r"fehlend",
        r"unvollstandig",
        r"manquant",
        r"incomplet",
        r"mancant",
        r"\bfalta",
        r"incomplet",
    ),
    # A listing hidden from search until its data is fixed: an inventory chore (normal).
    "search_suppressed": (
        r"not (searchable|discoverable|visible)",
        r"hidden from search",
        r"suppressed from search",
        r"searchable again",
        r"(add|fix|correct|edit) the (missing|listing|detail)",
        r"invalid (value|weight|attribute|image)",
        r"nicht (auffindbar|durchsuchbar|sichtbar)",
        r"plus visible",
        r"introuvable",
        r"non (e )?(ricercabile|visibile)",
        r"no (es )?visible",
        r"no aparece en (la )?busqueda",
    ),
    "warning": (
        r"warning",
        r"\bwarn",
        r"if (this|you|it) (continues|happens again|recurs)",
        r"future violations",
        r"(warnung|verwarnung|ermahnung)",
        r"bei (weiteren|erneuten) verstossen",
        r"avertissement",
        r"mise en garde",
        r"avvertimento",
        r"\bavviso",
        r"richiamo",
        r"advertencia",
    ),
    "ip_complaint": (
        r"intellectual property",
        r"rights? (owner|holder)",
        r"trademark",
        r"copyright",
        r"patent",
        r"infring",
        r"rechteinhaber",
        r"marken(recht|verletzung|inhaber)",
        r"urheberrecht",
        r"geistige[sn]? eigentum",
        r"rechtsverletzung",
        r"propriete intellectuelle",
        r"(titulaire|detenteur) (des|de) droits",
        r"marque deposee",
        r"droit d.auteur",
        r"brevet",
        r"proprieta intellettuale",
        r"titolare (dei|del) diritt",
        r"\bmarchio",
        r"diritto d.autore",
        r"brevetto",
        r"propiedad intelectual",
        r"titular de (los )?derechos",
        r"marca registrada",
        r"derechos de autor",
        r"patente",
    ),
    # --- orders -------------------------------------------------------------------------
    # Must ship today or overdue: high; everything else about an order: low.
    "ship_today": (
        r"ship (it |them |the order |this order )?today",
        r"must (be )?(ship|dispatch)",
        r"(ship|dispatch)(ped)?[ -]by",
        r"(expected|latest) (ship|dispatch) date",
        r"ship (it |this )?(before|by) (the end of )?(today|tonight)",
        r"heute (noch )?(versenden|versandt|verschicken)",
        r"noch heute",
        r"versenden sie (bis|heute)",
        r"(spatestes|letzte)\w* versanddatum",
        r"versand bis",
        r"expedi\w* aujourd.hui",
        r"expedier (avant|d.ici)",
        r"date (limite )?d.expedition",
        r"spedi\w* oggi",
        r"spedire entro",
        r"data (limite )?di spedizione",
        r"envia\w* hoy",
        r"enviar antes",
        r"fecha (limite )?de envio",
    ),
    "overdue": (
        r"overdue",
        r"past (the |its |your )?(ship|dispatch|due)",
        r"not (yet )?(been )?(shipped|dispatched|confirmed)",
        r"unshipped",
        r"has not shipped",
        r"late (order|shipment)s?\b(?! rate)",
        r"\blate\b(?! (shipment|dispatch|response) rate)",
        r"uberfallig",
        r"verspatet",
        r"noch nicht (versandt|versendet|bestatigt)",
        r"nicht versandt",
        r"en retard",
        r"pas encore (ete )?expedie",
        r"non expedie",
        r"in ritardo",
        r"non (ancora )?(e stato )?spedit",
        r"retrasad",
        r"con retraso",
        r"atrasad",
        r"no (se )?ha (sido )?enviad",
        r"sin enviar",
    ),
    "sold_ship_now": (
        r"dispatch now",
        r"bitte versenden sie",
        r"veuillez expedier",
        r"spedisci (l.ordine|subito|ora)",
        r"envia (el pedido|ya)",
        r"order (has been )?placed",
        r"sold,? ship now",
        r"you(.ve| have)? sold",
        r"new order",
        r"ship now",
        r"verkauft",
        r"neue bestellung",
        r"jetzt versenden",
        r"vendu",
        r"vous avez vendu",
        r"nouvelle commande",
        r"expediez maintenant",
        r"venduto",
        r"hai venduto",
        r"nuovo ordine",
        r"spedisci ora",
        r"vendido",
        r"has vendido",
        r"nuevo pedido",
        r"envia ahora",
    ),
    "cancelled": (
        r"cancel",
        r"storniert",
        r"stornierung",
        r"annulliert",
        r"annul",
        r"cancellat",
        r"cancelad",
        r"cancelacion",
        r"anulad",
    ),
    "shipped": (
        r"shipment confirm",
        r"\bshipped\b",
        r"(has been|was) dispatched",
        r"tracking (number|id)",
        r"versandbestatigung",
        r"versandt",
        r"sendungsnummer",
        r"confirmation d.expedition",
        r"\bexpedie",
        r"numero de suivi",
        r"conferma di spedizione",
        r"\bspedit",
        r"numero di tracciamento",
        r"confirmacion de envio",
        r"\benviad",
        r"numero de seguimiento",
    ),
    "pending": (
        r"pending",
        r"ausstehend",
        r"en attente",
        r"in sospeso",
        r"pendiente",
    ),
    # --- returns ------------------------------------------------------------------------
    "return": (
        r"rucksende",
        r"zurucksenden",
        r"zuruckschicken",
        r"zuruckgesendet",
        r"retourner",
        r"renvoyer",
        r"restituire",
        r"restituit",
        r"return(?<!vat return)(?<!tax return)",
        r"rucksendung",
        r"retoure",
        r"ruckgabe",
        r"\bretour",
        r"\breso\b",
        r"\bresi\b",
        r"restituzione",
        r"\bdevolucion(?! de cargo)",
        r"\bdevolver",
    ),
    "refund": (
        r"ruckerstatt",
        r"geld zuruck",
        r"refund",
        r"erstattung",
        r"erstattet",
        r"rembours",
        r"rimbors",
        r"reembols",
    ),
    "replacement": (
        r"replacement",
        r"ersatz",
        r"remplacement",
        r"sostituzione",
        r"sustitucion",
        r"reemplazo",
    ),
    # --- inventory ----------------------------------------------------------------------
    # Stranded stock and inbound problems are high: stock that cannot sell.
    "stranded": (
        r"(no|without an?) active (offer|listing)",
        r"cannot (be )?(bought|sold|purchased)",
        r"customers cannot buy",
        r"not (available )?for sale",
        r"(closed|inactive) (offer|listing)",
        r"sans offre active",
        r"senza offerta attiva",
        r"sin oferta activa",
        r"nicht (mehr )?verkauf",
        r"non (plus )?disponible a la vente",
        r"non (piu )?in vendita",
        r"no (esta )?(disponible )?a la venta",
        r"stranded",
        r"inactive inventory",
        r"unfulfil+able",
        r"gestrandet",
        r"ohne (aktives )?angebot",
        r"nicht verkaufbar",
        r"bloque",
        r"invendable",
        r"bloccat",
        r"non vendibile",
        r"varad",
        r"no vendible",
    ),
    "inbound_problem": (
        r"fewer units",
        r"units? (were |was )?(not received|missing|lost)",
        r"(weniger|fehlende) einheiten",
        r"unites manquantes",
        r"unita mancanti",
        r"unidades (que )?faltan",
        r"(labell?ing|box content|etikettierung|etiquetage|etichettatura|etiquetado)",
        r"(sendungs|versand|lieferungs?)problem",
        r"shipment problem",
        r"problem with (your|this) shipment",
        r"discrepanc",
        r"receiving (delay|problem|issue)",
        r"(envoi|expedition)s? entrant",
        r"spedizion\w* in entrata",
        r"envios? entrante",
        r"problem",
        r"issues?\b",
        r"damaged",
        r"beschadigt",
        r"endommage",
        r"danneggiat",
        r"danad",
    ),
    "restock_limit": (
        r"restock limit",
        r"(capacity|storage|inventory) limit",
        r"\bipi\b",
        r"auffullgrenze",
        r"lagerkapazit",
        r"kapazitats?limit",
        r"bestandsgrenze",
        r"limite de (reassort|stock|capacite|stockage)",
        r"limite di (rifornimento|capacita|stoccaggio|magazzino)",
        r"limite de (reposicion|capacidad|almacenamiento|inventario)",
        r"\blimit",
    ),
    "removal_order": (
        r"removal order",
        r"disposal",
        r"remove (your )?inventory",
        r"remissionsauftrag",
        r"ruckversandauftrag",
        r"entsorgung",
        r"commande de retrait",
        r"ordine di rimozione",
        r"smaltimento",
        r"orden de retirada",
    ),
    "storage_fee": (
        r"(langzeit)?lagergebuhr",
        r"lagerkosten",
        r"storage fee",
        r"long.term storage",
        r"aged inventory",
        r"lagergebuhr",
        r"langzeitlager",
        r"frais de stockage",
        r"stockage (de )?longue duree",
        r"(tariff[ae]|cost[io]) di stoccaggio",
        r"stoccaggio a lungo",
        r"tarifas? de almacenamiento",
        r"almacenamiento (de )?larga duracion",
    ),
    # A new listing is the least urgent inventory notice.
    # Stock on its way in or received: context for inventory, not a problem by itself.
    "inbound": (
        r"logistikzentrum",
        r"eingehend",
        r"centre (de distribution|logistique)",
        r"centro (logistico|di distribuzione|de logistica)",
        r"warehouse",
        r"lager\b",
        r"inbound",
        r"fulfil+ment cent(er|re)",
        r"(shipment|units?) (was |were |has been |have been )?(received|checked in)",
        r"wareneingang",
        r"eingegangen",
        r"(envoi|expedition) (a ete )?recu",
        r"ricevut",
        r"recibid",
    ),
    "listing_created": (
        r"added to the catalog(ue)?",
        r"(has been|was) published",
        r"can now be (bought|purchased|ordered)",
        r"(is )?now (available|live) (for sale|to (buy|customers)|on amazon)",
        r"jetzt (kaufbar|verfugbar|bestellbar)",
        r"(est )?desormais (disponible|en vente)",
        r"(e )?ora (acquistabile|disponibile|in vendita)",
        r"ya (esta )?(disponible|a la venta)",
        r"new (listing|offer)s? (is |are )?(live|active|ready)",
        r"listing (has been |was )?created",
        r"(listing|offer) is (now )?(live|active)",
        r"now live",
        r"angebot (wurde )?erstellt",
        r"jetzt (aktiv|online|live)",
        r"offre (a ete )?creee",
        r"est (maintenant )?en ligne",
        r"offerta (e stata )?creata",
        r"e ora (attiva|online)",
        r"oferta (ha sido )?creada",
        r"(ya|ahora) esta activa",
    ),
    "inventory": (
        r"inventory",
        r"lagerbestand",
        r"\bbestand",
        r"inventaire",
        r"\bstock",
        r"inventario",
        r"scorte",
        r"existencias",
        r"\bfba\b",
    ),
    # --- payments -----------------------------------------------------------------------
    # A declined method or held funds are high; routine money mail is low.
    "declined": (
        r"declined",
        r"\bfailed",
        r"could not (be )?(charged|processed|completed|sent)",
        r"unable to (charge|process|send|complete)",
        r"invalid (bank|card|payment)",
        r"expired (card|credit)",
        r"abgelehnt",
        r"fehlgeschlagen",
        r"konnte nicht",
        r"ungultig",
        r"refuse",
        r"echoue",
        r"n.a pas pu",
        r"invalide",
        r"rifiutat",
        r"non (e )?riuscit",
        r"non e stato possibile",
        r"non valid",
        r"rechazad",
        r"fallid",
        r"no se (ha )?podido",
        r"no valid",
        r"caducad",
    ),
    "on_hold": (
        r"on hold",
        r"\breserve\b",
        r"withheld",
        r"\bheld\b",
        r"frozen",
        r"einbehalten",
        r"zuruckgehalten",
        r"rucklage",
        r"\bretenu",
        r"en reserve",
        r"trattenut",
        r"\briserva\b",
        r"retenid",
        r"\breserva\b",
    ),
    "disbursement": (
        r"(gut|aus)zahlung",
        r"disburse",
        r"transfer(red)? to your bank",
        r"payment (is )?on its way",
        r"\bdeposit",
        r"payout",
        r"settlement",
        r"auszahlung",
        r"uberweisung",
        r"abrechnung",
        r"virement",
        r"versement",
        r"bonifico",
        r"versamento",
        r"transferencia",
        r"liquidacion",
        r"\babono",
    ),
    "statement": (
        r"statement",
        r"report is (now )?available",
        r"kontoauszug",
        r"abrechnungsbericht",
        r"releve",
        r"rendiconto",
        r"estratto",
        r"extracto",
    ),
    "invoice_fee": (
        r"invoice",
        r"\bfees?\b",
        r"subscription",
        r"rechnung",
        r"gebuhr",
        r"facture",
        r"\bfrais",
        r"fattura",
        r"\btariff",
        r"commission",
        r"factura",
        r"\btarifa",
        r"\bcuota",
    ),
    "payment_method": (
        r"payment method",
        r"credit card",
        r"bank (account|details)",
        r"card on file",
        r"zahlungs(methode|mittel|art)",
        r"kreditkarte",
        r"bank(konto|verbindung)",
        r"moyen de paiement",
        r"carte (bancaire|de credit)",
        r"(compte|coordonnees) bancaire",
        r"metodo di pagamento",
        r"carta di credito",
        r"(conto|coordinate) bancari",
        r"metodo de pago",
        r"tarjeta",
        r"(cuenta|datos) bancari",
    ),
    # --- messages -----------------------------------------------------------------------
    # The seller's own message did not reach the buyer: message_blocked.
    "not_delivered": (
        r"wasn.t (delivered|sent)",
        r"weren.t (delivered|sent)",
        r"couldn.t be (delivered|sent)",
        r"didn.t (go through|send|reach)",
        r"did not (go through|reach)",
        r"(held|bounced) back",
        r"(could|can) not be (delivered|sent)",
        r"not (been )?(delivered|sent)",
        r"undeliverable",
        r"(was|has been|were) (blocked|rejected)",
        r"konnte nicht (zugestellt|gesendet|versendet)",
        r"nicht (zugestellt|gesendet|ubermittelt)",
        r"blockiert",
        r"n.a pas (pu )?(ete )?(remis|envoye|livre|transmis)",
        r"non (a ete )?remis",
        r"non (e stato )?(recapitat|inviat|consegnat)",
        r"no se (ha )?(podido )?(entregar|enviar)",
        r"no (ha sido )?(entregad|enviad)",
        r"bloquead",
    ),
    "messaging": (
        r"buyer.seller messag",
        r"messaging",
        r"your message",
        r"ihre nachricht",
        r"nachrichten",
        r"votre message",
        r"messagerie",
        r"il tuo messaggio",
        r"messaggistica",
        r"tu mensaje",
        r"mensajeria",
    ),
    "content_rule": (
        r"external link",
        r"attachment",
        r"(email|e-mail) address",
        r"phone number",
        r"promotional content",
        r"anhang",
        r"e-mail-adresse",
        r"telefonnummer",
        r"piece jointe",
        r"\blien",
        r"allegat",
        r"collegament",
        r"adjunt",
        r"enlace",
    ),
    "buyer_relay": (
        r"begin message",
        r"end message",
        r"(inquiry|enquiry|message) from",
        r"amazon customer",
        r"nachricht von",
        r"anfrage von",
        r"message de",
        r"demande de",
        r"messaggio da",
        r"richiesta da",
        r"mensaje de",
        r"consulta de",
    ),
    # --- marketing ----------------------------------------------------------------------
    "webinar_event": (
        r"webinar",
        r"\bevent",
        r"register (now|today|here)",
        r"sign up",
        r"join us",
        r"save the date",
        r"veranstaltung",
        r"anmelden",
        r"evenement",
        r"inscri",
        r"\bevento",
        r"iscriviti",
        r"registrati",
        r"seminario",
    ),
    "promotion": (
        r"promot",
        r"\bdeals?\b",
        r"discount",
        r"coupon",
        r"prime day",
        r"black friday",
        r"aktion",
        r"rabatt",
        r"gutschein",
        r"\bpromo",
        r"remise",
        r"reduction",
        r"sconto",
        r"offerta lampo",
        r"descuento",
        r"oferta flash",
        r"cupon",
    ),
    "survey": (
        r"survey",
        r"tell us",
        r"your (opinion|thoughts)",
        r"umfrage",
        r"ihre meinung",
        r"sondage",
        r"votre avis",
        r"questionnaire",
        r"sondaggio",
        r"(la tua|vostra) opinione",
        r"encuesta",
        r"tu opinion",
    ),
    "advertising": (
        r"sponsored",
        r"advertis",
        r"amazon ads",
        r"campaign",
        r"werbung",
        r"gesponsert",
        r"kampagne",
        r"publicite",
        r"sponsoris",
        r"campagne",
        r"pubblicita",
        r"sponsorizzat",
        r"campagna",
        r"publicidad",
        r"patrocinad",
        r"campana",
    ),
    "news": (
        r"newsletter",
        r"what.s new",
        r"news\b(?<!good news)",
        r"\btips\b",
        r"neuigkeiten",
        r"tipps",
        r"actualites",
        r"nouveautes",
        r"conseils",
        r"novita",
        r"notizie",
        r"consigli",
        r"novedades",
        r"noticias",
        r"consejos",
    ),
    # --- mail that is not seller business -----------------------------------------------
    # Amazon shopping mail about the seller's own purchase is `other`.
    "own_purchase": (
        r"order of [\w ,.'-]{0,60} (has|have) (shipped|been (delivered|dispatched))",
        r"(has|have) shipped",
        r"arriving",
        r"delivered today",
        r"your delivery",
        r"ist unterwegs",
        r"wurde zugestellt",
        r"a ete livre",
        r"e stato consegnato",
        r"ha sido entregado",
        r"esta en camino",
        r"your (order|package|parcel)s? (has |have )?"
        r"(shipped|been shipped|is on (its|the) way|was delivered|has been delivered)",
        r"your (package|parcel|delivery)",
        r"packages? (is |are )?(ready|to pick ?up|for pick ?up)",
        r"pick ?up (code|location|point|your)",
        r"(parcel )?locker",
        r"abholbereit",
        r"dein paket",
        r"packstation",
        r"point relais",
        r"(pret|disponible) (a etre|pour) retir",
        r"punto di ritiro",
        r"pronto per il ritiro",
        r"punto de recogida",
        r"listo para recoger",
        r"arriving (today|tomorrow|on|soon)",
        r"out for delivery",
        r"track (your )?(package|parcel)",
        r"(thanks|thank you) for (your|shopping)",
        r"ihr paket",
        r"wird (heute|morgen) (geliefert|zugestellt)",
        r"zustellung",
        r"votre colis",
        r"en cours de livraison",
        r"livre (aujourd.hui|demain)",
        r"il tuo pacco",
        r"in consegna",
        r"arriva (oggi|domani)",
        r"tu paquete",
        r"en reparto",
        r"llega (hoy|manana)",
    ),
    # Amazon's shopping mail speaks to a buyer about "your order"; seller notices do not.
    "your_order": (
        r"your (amazon(\.\w+)? )?order",
        r"ihre bestellung",
        r"deine bestellung",
        r"votre commande",
        r"il tuo ordine",
        r"tu pedido",
    ),
    "carrier": (
        r"\bups\b",
        r"fedex",
        r"\bdhl\b",
        r"\busps\b",
        r"royal mail",
        r"hermes",
        r"\bdpd\b",
        r"\bgls\b",
        r"colissimo",
        r"chronopost",
        r"correos",
        r"\bseur\b",
        r"poste italiane",
        r"\bbrt\b",
        r"evri",
    ),
    # --- feedback -----------------------------------------------------------------------
    "feedback": (
        r"(produkt|kunden|verkaufer|kaufer|sterne|negativ|positiv|neutral)bewertung",
        r"kundenrezension",
        r"feedback",
        r"review",
        r"rating",
        r"bewertung",
        r"rezension",
        r"evaluation",
        r"\bavis\b",
        r"commentaire",
        r"valutazion",
        r"recension",
        r"valoracion",
        r"resena",
        r"calificacion",
        r"opinion",
    ),
    "negative": (
        r"poor(ly)?\b",
        r"awful",
        r"terrible",
        r"disappoint",
        r"schlecht",
        r"enttausch",
        r"mauvais",
        r"decevant",
        r"pessim",
        r"scarso",
        r"delus",
        r"malo\b",
        r"mala\b",
        r"pesim",
        r"decepcion",
        r"negati",
    ),
    "positive": (
        r"excellent",
        r"happy",
        r"great (seller|service|job)",
        r"hervorragend",
        r"ausgezeichnet",
        r"zufrieden",
        r"satisfait",
        r"eccellente",
        r"soddisfatt",
        r"excelente",
        r"satisfech",
        r"positi",
    ),
    "neutral": (r"neutr",),
    "feedback_removal": (
        r"struck through",
        r"(remove|removal of|delete) (the |this |a )?(feedback|review)",
        r"request to remove",
        r"will remain on your",
        r"does not violate",
        r"durchgestrichen",
        r"barre",
        r"barrat",
        r"tachad",
        r"(feedback|review|bewertung|evaluation|avis|valutazione|valoracion)\w* [\w ,.'-]{0,60}"
        r"(removed|entfernt|supprime|retire|rimoss|eliminad|retirad)",
        r"(removal|entfernung|suppression|rimozione|eliminacion|retirada) [\w ]{0,40}"
        r"(request|antrag|demande|richiesta|solicitud)",
    ),
}

STAR_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "ein": 1, "eine": 1, "einen": 1, "zwei": 2, "drei": 3, "vier": 4, "funf": 5,
    "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5,
    "una": 1, "due": 2, "tre": 3, "quattro": 4, "cinque": 5,
    "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5,
}  # fmt: skip
_NUMBER = r"(\d|" + "|".join(sorted(STAR_WORDS, key=len, reverse=True)) + r")"
# The distinctive part is searched for first and the number read just before it, since a
# pattern that starts with a number would be tried at every position of every mail.
# "4 out of 5", "2/5", "2 von 5 Sternen", "3 sur 5", "1 su 5", "2 de 5"
STAR_OUT_OF = re.compile(r"(?:out of|/|von|sur|su|de) ?5\b")
# "2 stars", "1-star", "2 Sterne", "2 étoiles", "2 stelle", "2 estrellas"
STAR_COUNT = re.compile(r"(?:stars?|sterne?n?|etoiles?|stelle|stella|estrellas?)\b")
NUMBER_BEFORE = re.compile(r"\b" + _NUMBER + r"(?:[.,]0)?[ -]?$")
# "Rating: 2", "Bewertung: 4", "Note : 3", "Valutazione: 1", "Puntuación: 5"
STAR_FIELD = re.compile(
    r"(?:rating|bewertung|note|valutazione|puntuacion|calificacion|valoracion|sterne|stars)"
    r" ?: ?(\d)\b"
)
STAR_GLYPHS = re.compile(r"[★☆]{3,5}")


class Guard(NamedTuple):
    """Text that every match of a pattern holds: needles that start or end with a mark."""

    mark: str
    starting: tuple[str, ...]
    ending: tuple[str, ...]
    size: int

    @classmethod
    def of(cls, mark: str, needles: Iterable[str]) -> Guard:
        needles = tuple(needles)
        starting = tuple(needle for needle in needles if needle.startswith(mark))
        ending = tuple(needle for needle in needles if needle.endswith(mark))
        if set(starting) | set(ending) != set(needles):
            raise ValueError(f"a needle of {needles} neither starts nor ends with {mark!r}")
        return cls(mark, starting, ending, len(mark))


# A pattern is run only on text that holds one of its guard's needles, found from where
# the mark (a rare string) is: a regex tried at every "s" or "o" of every mail costs far
# more than that.
STAR_GUARDS = {
    STAR_OUT_OF: (
        Guard.of("5", (f"{word}{space}5" for word in ("out of", "/", "von", "sur", "su", "de")
                       for space in (" ", ""))),
    ),
    STAR_COUNT: (
        Guard.of("st", ("star", "stern", "stelle", "stella", "strella")),
        Guard.of("etoile", ("etoile",)),
    ),
    STAR_FIELD: (
        Guard.of(":", (f"{word}{space}:" for word in ("rating", "bewertung", "note", "valutazione",
                                                       "puntuacion", "calificacion", "valoracion",
                                                       "sterne", "stars")
                       for space in (" ", ""))),
    ),
}  # fmt: skip


def star_bucket(stars: int) -> str:
    """1-2 stars are negative (high), 3 neutral (normal), 4-5 positive (low)."""
    if stars <= 2:
        return "stars_low"
    return "stars_mid" if stars == 3 else "stars_high"


def _star_value(word: str) -> int | None:
    value = int(word) if word.isdigit() else STAR_WORDS.get(word, 0)
    return value if 1 <= value <= 5 else None


def _finditer(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    if any(holds(text, guard) for guard in STAR_GUARDS[pattern]):
        yield from pattern.finditer(text)


def holds(text: str, guard: Guard) -> bool:
    """Whether ``text`` holds one of the guard's needles, looked for where its mark is."""
    at = text.find(guard.mark)
    while at >= 0:
        if text.startswith(guard.starting, at) or text.endswith(guard.ending, 0, at + guard.size):
            return True
        at = text.find(guard.mark, at + 1)
    return False


def star_rating(text: str, normalised: str | None = None) -> int | None:
    """The star rating a mail states, if it states one."""
    if "★" in text or "☆" in text:
        glyphs = STAR_GLYPHS.search(text)
        if glyphs:
            return glyphs.group(0).count("★") or None
    low = normalise(text) if normalised is None else normalised
    for pattern in (STAR_OUT_OF, STAR_COUNT):
        for match in _finditer(pattern, low):
            number = NUMBER_BEFORE.search(low, max(0, match.start() - 12), match.start())
            value = _star_value(number.group(1)) if number else None
            if value is not None:
                return value
    for match in _finditer(STAR_FIELD, low):
        value = _star_value(match.group(1))
        if value is not None:
            return value
    return None


LEADING_GROUP = re.compile(r"^\(([^()]*)\)(\??)")
KEY_SIZE = 3
# The first letters of every word, where the word starts: the keys of the index.
WORD_KEY = re.compile(r"(?<![a-z0-9])[a-z0-9]{1,3}")


def expand(alternative: str) -> list[str]:
    """Spell out a leading ``(a|b)`` group, so each alternative starts with a literal."""
    body = alternative.removeprefix(r"\b")
    match = LEADING_GROUP.match(body)
    if not match:
        return [alternative]
    options = match.group(1).split("|") + ([""] if match.group(2) else [])
    rest = body[match.end() :]
    return [spelled for option in options for spelled in expand(option + rest)]


def anchor(alternative: str) -> str:
    """The first letters of the word an alternative must start at (its index key)."""
    body = alternative.removeprefix(r"\b")
    word = re.match(r"[a-z0-9]*", body)
    literal = word.group(0) if word else ""
    if not literal:
        raise ValueError(f"lexicon entry {alternative!r} does not start with a literal word")
    # A literal cut short by a pattern (``cancel+``, ``stornierung\w*``) keeps only its stem.
    follower = body[len(literal) : len(literal) + 1]
    if follower in ("+", "*", "?", "{") and len(literal) > 1:
        literal = literal[:-1]
    if len(literal) < KEY_SIZE and follower not in ("", " ", "-", ".", "'", "\\"):
        raise ValueError(f"lexicon entry {alternative!r} starts with too short a literal")
    return literal[:KEY_SIZE]


def _index(
    lexicon: dict[str, tuple[str, ...]],
) -> dict[str, list[tuple[str, tuple[str, ...], re.Pattern[str]]]]:
    """Per index key, per concept: the literal openings and one pattern of its alternatives."""
    spelled: dict[str, dict[str, list[str]]] = {}
    for name, alternatives in lexicon.items():
        for alternative in alternatives:
            for spelling in expand(alternative):
                spelled.setdefault(anchor(spelling), {}).setdefault(name, []).append(spelling)
    return {
        key: [
            (
                name,
                tuple({head_and_rest(s)[0] for s in alts}),
                re.compile("|".join(f"(?:{s})" for s in alts)),
            )
            for name, alts in by.items()
        ]
        for key, by in spelled.items()
    }


# The literal letters an alternative opens with; a quantified last letter is not one.
LITERAL_HEAD = re.compile(r"[a-z0-9 '-]*")
# An opening parenthesis that captures (escapes are matched first and kept as they are).
# Groups that capture cost the engine bookkeeping at every try; the scan needs none.
CAPTURING = re.compile(r"\\.|\((?!\?)")


def head_and_rest(alternative: str) -> tuple[str, str]:
    """An alternative split into its literal opening and the pattern that follows it."""
    body = alternative.removeprefix(r"\b")
    literal = LITERAL_HEAD.match(body)
    head = literal.group() if literal else ""
    if body[len(head) : len(head) + 1] in ("*", "+", "?", "{"):
        head = head[:-1]
    rest = body[len(head) :]
    if _alternates_at_top(rest):  # "ab|cd" must not become "a" + "b|cd"
        return "", body
    return head, CAPTURING.sub(lambda m: "(?:" if m.group() == "(" else m.group(), rest)


def _alternates_at_top(pattern: str) -> bool:
    depth, i = 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 1
        elif char == "[":  # to the class's end; a "]" first in a class is a letter of it
            i += 2 if pattern[i + 1 : i + 2] == "^" else 1
            i = pattern.index("]", i + 1 if pattern[i : i + 1] == "]" else i)
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "|" and depth == 0:
            return True
        i += 1
    return False


def trie_pattern(pairs: list[tuple[str, str]]) -> str:
    """One regex for many (literal opening, rest) pairs, the openings shared as a trie.

    Python's regex engine tries alternatives one by one, but skips at once those that
    start with a letter other than the one at hand: a trie keeps each step to one letter.
    """
    root: dict[str, Any] = {}
    for head, rest in pairs:
        node = root
        for char in head:
            node = node.setdefault(char, {})
        node.setdefault("", set()).add(rest)
    return _trie_node(root)


def _trie_node(node: dict[str, Any]) -> str:
    rests = sorted(node.get("", ()))
    if "" in rests:  # the opening alone suffices: nothing longer can add a match
        return ""
    branches = [f"(?:{'|'.join(rests)})"] if rests else []
    branches += [re.escape(char) + _trie_node(node[char]) for char in sorted(node) if char]
    return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"


def _candidate_patterns(lexicon: dict[str, tuple[str, ...]]) -> tuple[re.Pattern[str], ...]:
    alternatives = {
        spelling
        for alternatives in lexicon.values()
        for alternative in alternatives
        for spelling in expand(alternative)
    }
    trie = trie_pattern([head_and_rest(spelling) for spelling in sorted(alternatives)])
    return re.compile(f"(?={trie})"), re.compile(f"[^a-z0-9](?={trie})")


# Where a word starts at which some alternative of some concept matches (``\b`` and the
# index key left aside, so these are a few more places than the concepts are found at).
# One scan of the text in C; the index's own patterns then run at those places only.
CANDIDATE_AT_START, CANDIDATE = _candidate_patterns(LEXICON)
# Each alternative is tried only where a word starting with its first letters begins,
# and only where the text goes on with the literal opening of one of the concept's.
INDEX = _index(LEXICON)
# Letters NFKD does not take apart; str.replace is far quicker than str.translate here.
FOLDS = (("’", "'"), ("ß", "ss"), ("œ", "oe"), ("æ", "ae"))


def normalise(text: str) -> str:
    """Lower case, accents stripped, apostrophes and spaces folded."""
    text = text.lower()
    if not text.isascii():
        for letter, spelled in FOLDS:
            text = text.replace(letter, spelled)
        text = unicodedata.normalize("NFKD", text)
    return " ".join(text.encode("ascii", "ignore").decode("ascii").split())


# A concept that, when found, says another match was negated ("no listing was removed").
SUPPRESSES = {
    "not_removed": ("action_taken", "listing_removed"),
    "no_impact": ("against_seller",),
    "may_be_removed": ("listing_removed",),
    "info_needed": ("closed_withdrawn",),
    "back_in_target": ("above_target",),
}


def candidates(text: str) -> list[int]:
    """The word starts of a normalised text where some concept may match."""
    starts = [0] if CANDIDATE_AT_START.match(text) else []
    starts += [match.end() for match in CANDIDATE.finditer(text)]
    return starts


def concepts(text: str) -> set[str]:
    """The concepts a normalised text mentions."""
    found: set[str] = set()
    for pos in candidates(text):
        word = WORD_KEY.match(text, pos)
        for name, heads, pattern in INDEX.get(word.group() if word else "", ()):
            if name not in found and text.startswith(heads, pos) and pattern.match(text, pos):
                found.add(name)
    return suppress(found)


def suppress(found: set[str]) -> set[str]:
    """Drop the concepts that another concept found says were negated."""
    for name, negated in SUPPRESSES.items():
        if name in found:
            found.difference_update(negated)
    return found


def signal_tokens(subject: str, body: str) -> str:
    """Concept tokens: ``c:X`` anywhere, ``s:X`` in the subject, and the star bucket."""
    subject_n = normalise(subject)
    body_n = normalise(body[:SIGNAL_CAP])
    in_subject = concepts(subject_n)
    tokens = [f"c:{name}" for name in sorted(suppress(in_subject | concepts(body_n)))]
    tokens += [f"s:{name}" for name in sorted(in_subject)]
    text = f"{subject}\n{body[:SIGNAL_CAP]}"
    stars = star_rating(text, f"{subject_n}\n{body_n}")
    if stars is not None:
        tokens.append(f"c:{star_bucket(stars)}")
    return " ".join(tokens) or "c:none"
