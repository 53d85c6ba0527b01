"""Lexicon of the synthetic English -> pseudo-German demo corpus.

Used by ``make_demo_corpus.py`` (see its docstring for the grammar).  The
tables are plain text, one entry per line, columns separated by ``|``.  A
cell may hold alternatives separated by ``/``: the English word then has
several valid translations; the first is drawn with probability 0.7, the
second with 0.3 (``VARIANT_WEIGHTS``).  Everything is ASCII (umlauts are
written ae/oe/ue, sharp s as ss) and kept in lists, never sets, so that
iteration order, and hence the corpus, is identical on every machine.
"""

from typing import NamedTuple

VARIANT_WEIGHTS = {1: (1.0,), 2: (0.7, 0.3), 3: (0.6, 0.25, 0.15)}


class NounDe(NamedTuple):
    sg: str
    pl: str
    gender: str  # m / f / n
    stem: str  # form used as the first part of a compound


class Noun(NamedTuple):
    en: str
    en_pl: str
    classes: tuple
    variants: tuple  # of NounDe


class VerbDe(NamedTuple):
    inf: str  # infinitive without separable prefix
    prefix: str  # separable prefix ("an" in an+rufen) or ""
    irr: tuple  # () or (2sg, 3sg) or (1sg, 2sg, 3sg) present forms
    part: str  # past participle


class Verb(NamedTuple):
    kind: str  # tr, dat, ditr, intr, mot, say
    en: tuple  # (base, 3sg, past)
    aux: str  # haben / sein
    subj: tuple  # classes allowed as subject
    obj: tuple  # classes allowed as (accusative or dative) object
    variants: tuple  # of VerbDe


class Word(NamedTuple):
    en: str
    de: tuple  # translations (variants)
    extra: str  # attributive stem (adjectives) / case (prepositions) / ...
    classes: tuple


# en | en plural | de | de plural | gender | classes | compound stem
NOUN_TABLE = """
man|men|Mann|Maenner|m|person
woman|women|Frau|Frauen|f|person
child|children|Kind|Kinder|n|person
teacher|teachers|Lehrer|Lehrer|m|person
doctor|doctors|Arzt|Aerzte|m|person
friend|friends|Freund|Freunde|m|person
girl|girls|Maedchen|Maedchen|n|person
son|sons|Sohn|Soehne|m|person
daughter|daughters|Tochter|Toechter|f|person
father|fathers|Vater|Vaeter|m|person
mother|mothers|Mutter|Muetter|f|person
brother|brothers|Bruder|Brueder|m|person
sister|sisters|Schwester|Schwestern|f|person
baker|bakers|Baecker|Baecker|m|person
farmer|farmers|Landwirt|Landwirte|m|person
king|kings|Koenig|Koenige|m|person
queen|queens|Koenigin|Koeniginnen|f|person
driver|drivers|Fahrer|Fahrer|m|person
cook|cooks|Koch|Koeche|m|person
guest|guests|Gast|Gaeste|m|person
painter|painters|Maler|Maler|m|person
singer|singers|Saenger|Saenger|m|person
worker|workers|Arbeiter|Arbeiter|m|person
uncle|uncles|Onkel|Onkel|m|person
aunt|aunts|Tante|Tanten|f|person
pupil|pupils|Schueler|Schueler|m|person
waiter|waiters|Kellner|Kellner|m|person
thief|thieves|Dieb|Diebe|m|person
grandmother|grandmothers|Oma|Omas|f|person
dog|dogs|Hund|Hunde|m|animal
cat|cats|Katze|Katzen|f|animal
horse|horses|Pferd|Pferde|n|animal
bird|birds|Vogel|Voegel|m|animal
cow|cows|Kuh|Kuehe|f|animal
mouse|mice|Maus|Maeuse|f|animal
fish|fish|Fisch|Fische|m|animal food
sheep|sheep|Schaf|Schafe|n|animal
pig|pigs|Schwein|Schweine|n|animal
duck|ducks|Ente|Enten|f|animal
wolf|wolves|Wolf|Woelfe|m|animal
fox|foxes|Fuchs|Fuechse|m|animal
goat|goats|Ziege|Ziegen|f|animal
rabbit|rabbits|Kaninchen|Kaninchen|n|animal
chicken|chickens|Huhn|Huehner|n|animal food|Huehner
book|books|Buch|Buecher|n|thing text open
letter|letters|Brief|Briefe|m|thing text open question
newspaper|newspapers|Zeitung|Zeitungen|f|thing text
story|stories|Geschichte|Geschichten|f|text story
song|songs|Lied|Lieder|n|song
question|questions|Frage|Fragen|f|question
key|keys|Schluessel|Schluessel|m|thing
table|tables|Tisch|Tische|m|thing surface built
chair|chairs|Stuhl|Stuehle|m|thing surface built
cup|cups|Tasse|Tassen|f|thing
glass|glasses|Glas|Glaeser|n|thing
bag|bags|Tasche|Taschen|f|thing open
ball|balls|Ball|Baelle|m|thing
picture|pictures|Bild/Gemaelde|Bilder/Gemaelde|n/n|thing
clock|clocks|Uhr|Uhren|f|thing
lamp|lamps|Lampe|Lampen|f|thing
door|doors|Tuer|Tueren|f|open
window|windows|Fenster|Fenster|n|open
car|cars|Auto/Wagen|Autos/Wagen|n/m|thing vehicle
bicycle|bicycles|Fahrrad|Fahrraeder|n|thing vehicle
boat|boats|Boot|Boote|n|thing vehicle built
bus|buses|Bus|Busse|m|vehicle
train|trains|Zug|Zuege|m|vehicle
shoe|shoes|Schuh|Schuhe|m|thing
hat|hats|Hut|Huete|m|thing
coat|coats|Mantel|Maentel|m|thing
box|boxes|Kiste|Kisten|f|thing open
bottle|bottles|Flasche|Flaschen|f|thing open
plate|plates|Teller|Teller|m|thing
knife|knives|Messer|Messer|n|thing
spoon|spoons|Loeffel|Loeffel|m|thing
ring|rings|Ring|Ringe|m|thing
phone|phones|Telefon|Telefone|n|thing
computer|computers|Rechner|Rechner|m|thing
map|maps|Karte|Karten|f|thing text
ticket|tickets|Fahrkarte|Fahrkarten|f|thing
gift|gifts|Geschenk|Geschenke|n|thing open
bed|beds|Bett|Betten|n|surface
tree|trees|Baum|Baeume|m|surface tall
flower|flowers|Blume|Blumen|f|thing|Blumen
stone|stones|Stein|Steine|m|thing
apple|apples|Apfel|Aepfel|m|food
bread|breads|Brot|Brote|n|food
cake|cakes|Kuchen|Kuchen|m|food
egg|eggs|Ei|Eier|n|food
cheese|cheeses|Kaese|Kaese|m|food
soup|soups|Suppe|Suppen|f|food
pear|pears|Birne|Birnen|f|food|Birnen
sausage|sausages|Wurst|Wuerste|f|food
potato|potatoes|Kartoffel|Kartoffeln|f|food
orange|oranges|Orange|Orangen|f|food|Orangen
cookie|cookies|Keks|Kekse|m|food
carrot|carrots|Karotte|Karotten|f|food|Karotten
tomato|tomatoes|Tomate|Tomaten|f|food|Tomaten
water|-|Wasser|-|n|drink mass
milk|-|Milch|-|f|drink mass
coffee|-|Kaffee|-|m|drink mass
tea|-|Tee|-|m|drink mass
juice|-|Saft|-|m|drink mass
house|houses|Haus|Haeuser|n|place built tall
city|cities|Stadt|Staedte|f|place
school|schools|Schule|Schulen|f|place built|Schul
garden|gardens|Garten|Gaerten|m|place
park|parks|Park|Parks|m|place
station|stations|Bahnhof|Bahnhoefe|m|place|Bahnhofs
bank|banks|Bank|Banken|f|place
kitchen|kitchens|Kueche|Kuechen|f|place|Kuechen
church|churches|Kirche|Kirchen|f|place built tall|Kirchen
street|streets|Strasse/Gasse|Strassen/Gassen|f/f|place surface|Strassen/Gassen
shop|shops|Laden/Geschaeft|Laeden/Geschaefte|m/n|place open
office|offices|Buero|Bueros|n|place
hospital|hospitals|Krankenhaus|Krankenhaeuser|n|place
village|villages|Dorf|Doerfer|n|place
forest|forests|Wald|Waelder|m|place
river|rivers|Fluss|Fluesse|m|place
lake|lakes|See|Seen|m|place
market|markets|Markt|Maerkte|m|place
museum|museums|Museum|Museen|n|place
hotel|hotels|Hotel|Hotels|n|place built
room|rooms|Zimmer|Zimmer|n|place
library|libraries|Bibliothek|Bibliotheken|f|place
bridge|bridges|Bruecke|Bruecken|f|place surface built tall
castle|castles|Schloss|Schloesser|n|place built tall
farm|farms|Bauernhof|Bauernhoefe|m|place
island|islands|Insel|Inseln|f|place surface
mountain|mountains|Berg|Berge|m|place surface tall
beach|beaches|Strand|Straende|m|place
"""

# English noun-noun compounds "modifier head" -> one German word.
# head: modifiers
COMPOUND_TABLE = """
bank: city village
tree: apple pear orange garden
door: house kitchen garden car church school
key: house car door kitchen hotel
table: kitchen garden
garden: school house hotel church
cup: coffee tea
bottle: water milk juice
cake: apple cheese carrot
soup: tomato potato chicken fish
teacher: school village
driver: bus train car
shop: bread cheese flower book
street: city village market
bridge: river city
church: city village
park: city hotel
map: city
ticket: train bus
window: kitchen car church school
room: hotel school
lamp: table street kitchen
clock: church station kitchen
house: tree garden
"""

# kind | en base | en 3sg | en past | de (prefix+inf) | irregular present
# | participle | aux | subject classes | object classes
VERB_TABLE = """
tr|see|sees|saw|sehen|siehst sieht|gesehen|haben|person animal|any
tr|buy|buys|bought|kaufen||gekauft|haben|person|thing food drink
tr|find|finds|found|finden||gefunden|haben|person animal|any
tr|eat|eats|ate|essen|isst isst|gegessen|haben|person animal|food
tr|drink|drinks|drank|trinken||getrunken|haben|person animal|drink
tr|read|reads|read|lesen|liest liest|gelesen|haben|person|text
tr|write|writes|wrote|schreiben||geschrieben|haben|person|text song
tr|open|opens|opened|oeffnen/auf+machen|/|geoeffnet/aufgemacht|haben|person|open
tr|close|closes|closed|schliessen/zu+machen|/|geschlossen/zugemacht|haben|person|open
tr|build|builds|built|bauen||gebaut|haben|person|built
tr|sell|sells|sold|verkaufen||verkauft|haben|person|thing food animal
tr|need|needs|needed|brauchen||gebraucht|haben|person animal|thing food drink
tr|like|likes|liked|moegen|mag magst mag|gemocht|haben|person animal|any
tr|love|loves|loved|lieben||geliebt|haben|person animal|person animal food
tr|know|knows|knew|kennen||gekannt|haben|person animal|person place story song
tr|visit|visits|visited|besuchen||besucht|haben|person|person place
tr|wash|washes|washed|waschen|waeschst waescht|gewaschen|haben|person|animal thing
tr|carry|carries|carried|tragen|traegst traegt|getragen|haben|person animal|thing animal
tr|take|takes|took|nehmen|nimmst nimmt|genommen|haben|person animal|thing food
tr|paint|paints|painted|malen||gemalt|haben|person|any
tr|draw|draws|drew|zeichnen||gezeichnet|haben|person|any
tr|cook|cooks|cooked|kochen||gekocht|haben|person|food
tr|catch|catches|caught|fangen|faengst faengt|gefangen|haben|person animal|animal
tr|call|calls|called|an+rufen||angerufen|haben|person|person
tr|pick up|picks up|picked up|ab+holen||abgeholt|haben|person|person thing
tr|invite|invites|invited|ein+laden|laedst laedt|eingeladen|haben|person|person
tr|clean|cleans|cleaned|putzen||geputzt|haben|person|thing place
tr|repair|repairs|repaired|reparieren||repariert|haben|person|thing vehicle
tr|forget|forgets|forgot|vergessen|vergisst vergisst|vergessen|haben|person animal|thing person text
tr|lose|loses|lost|verlieren||verloren|haben|person animal|thing
tr|look for|looks for|looked for|suchen||gesucht|haben|person animal|any
tr|hear|hears|heard|hoeren||gehoert|haben|person animal|person animal song
tr|sing|sings|sang|singen||gesungen|haben|person|song
tr|meet|meets|met|treffen|triffst trifft|getroffen|haben|person animal|person
tr|understand|understands|understood|verstehen||verstanden|haben|person|person text question
tr|answer|answers|answered|beantworten||beantwortet|haben|person|question
tr|watch|watches|watched|beobachten||beobachtet|haben|person animal|person animal
tr|feed|feeds|fed|fuettern||gefuettert|haben|person|animal person
dat|help|helps|helped|helfen|hilfst hilft|geholfen|haben|person animal|person animal
dat|thank|thanks|thanked|danken||gedankt|haben|person|person
dat|follow|follows|followed|folgen||gefolgt|sein|person animal|person animal
dat|trust|trusts|trusted|vertrauen||vertraut|haben|person animal|person animal
ditr|give|gives|gave|geben|gibst gibt|gegeben|haben|person|thing food
ditr|show|shows|showed|zeigen||gezeigt|haben|person|thing text
ditr|send|sends|sent|schicken/senden|/|geschickt/gesendet|haben|person|thing text
ditr|bring|brings|brought|bringen||gebracht|haben|person animal|thing food drink
ditr|tell|tells|told|erzaehlen||erzaehlt|haben|person|story
mot|go|goes|went|gehen||gegangen|sein|person animal|
mot|come|comes|came|kommen||gekommen|sein|person animal|
mot|run|runs|ran|laufen|laeufst laeuft|gelaufen|sein|person animal|
mot|drive|drives|drove|fahren|faehrst faehrt|gefahren|sein|person|
mot|fly|flies|flew|fliegen||geflogen|sein|person animal|
mot|swim|swims|swam|schwimmen||geschwommen|sein|person animal|
mot|travel|travels|travelled|reisen||gereist|sein|person|
mot|walk|walks|walked|wandern||gewandert|sein|person animal|
mot|arrive|arrives|arrived|an+kommen||angekommen|sein|person animal|
mot|leave|leaves|left|ab+fahren|faehrst faehrt|abgefahren|sein|person|
intr|stay|stays|stayed|bleiben||geblieben|sein|person animal|
intr|sleep|sleeps|slept|schlafen|schlaefst schlaeft|geschlafen|haben|person animal|
intr|work|works|worked|arbeiten||gearbeitet|haben|person animal|
intr|laugh|laughs|laughed|lachen||gelacht|haben|person|
intr|cry|cries|cried|weinen||geweint|haben|person animal|
intr|wait|waits|waited|warten||gewartet|haben|person animal|
intr|play|plays|played|spielen||gespielt|haben|person animal|
intr|dance|dances|danced|tanzen||getanzt|haben|person animal|
intr|live|lives|lived|wohnen/leben|/|gewohnt/gelebt|haben|person animal|
intr|dream|dreams|dreamed|traeumen||getraeumt|haben|person animal|
intr|sit|sits|sat|sitzen||gesessen|haben|person animal|
intr|study|studies|studied|lernen||gelernt|haben|person|
intr|get up|gets up|got up|auf+stehen||aufgestanden|sein|person animal|
intr|wake up|wakes up|woke up|auf+wachen||aufgewacht|sein|person animal|
say|say|says|said|sagen||gesagt|haben|person|
say|think|thinks|thought|denken/glauben|/|gedacht/geglaubt|haben|person|
say|know|knows|knew|wissen|weiss weisst weiss|gewusst|haben|person|
say|hope|hopes|hoped|hoffen||gehofft|haben|person|
say|believe|believes|believed|glauben||geglaubt|haben|person|
"""

# en | predicative de | attributive stem if irregular | noun classes
ADJ_TABLE = """
big|gross||any
small|klein||any
old|alt||any
new|neu||thing place vehicle text
young|jung||person animal
good|gut||any
bad|schlecht||any
beautiful|schoen/huebsch||any
red|rot||thing vehicle
blue|blau||thing vehicle
green|gruen||thing vehicle
white|weiss||thing animal vehicle
black|schwarz||thing animal vehicle
yellow|gelb||thing vehicle
long|lang||thing text story song
short|kurz||thing text story song
heavy|schwer||thing
expensive|teuer|teur|thing vehicle food
cheap|billig||thing food
dark|dunkel|dunkl|place thing
high|hoch|hoh|tall
cold|kalt||food drink place
hot|heiss||food drink
fresh|frisch||food drink
sweet|suess||food drink
fast|schnell||animal vehicle
slow|langsam||animal vehicle
happy|gluecklich/froh||person animal
sad|traurig||person animal
tired|muede||person animal
hungry|hungrig||person animal
clever|klug||person animal
rich|reich||person
poor|arm||person
friendly|freundlich||person animal
lazy|faul||person animal
brave|mutig||person
quiet|ruhig/still||person animal place
loud|laut||person animal vehicle place
clean|sauber||thing place
dirty|schmutzig||thing place animal
empty|leer||thing place
famous|beruehmt||person place text song
strange|seltsam||any
"""

# en | de | (unused) | tenses the adverb goes with
TIME_TABLE = """
today|heute||pres past fut can must want
yesterday|gestern||past
tomorrow|morgen||fut can must want
now|jetzt||pres can must want
often|oft/haeufig||pres past
always|immer||pres past
sometimes|manchmal||pres past
every day|jeden Tag||pres past can must
in the morning|am Morgen||pres past fut
in the evening|am Abend||pres past fut can must want
on sunday|am Sonntag||pres past fut can must want
last week|letzte Woche||past
next week|naechste Woche||fut
soon|bald||fut can
"""

MANNER_TABLE = """
quickly|schnell/rasch
slowly|langsam
carefully|vorsichtig
quietly|leise
loudly|laut
together|zusammen
alone|allein
again|wieder
"""

# en | de | case | noun classes | use (loc: location, dir: direction, any)
PREP_TABLE = """
in|in|dat|place|loc
at|an|dat|place|loc
behind|hinter|dat|place surface vehicle|loc
next to|neben|dat|place person vehicle|loc
under|unter|dat|surface|loc
on|auf|dat|surface|loc
with|mit|dat|person animal thing|any
without|ohne|acc|person animal thing|any
for|fuer|acc|person animal|any
to|zu|dat|place person|dir
into|in|acc|place|dir
through|durch|acc|place|dir
over|ueber|acc|surface|dir
from|von|dat|place person|dir
"""

# Subordinating conjunctions (verb-final clauses); "when" is wenn/als by tense.
CONJ_TABLE = """
because|weil/da
although|obwohl
if|wenn/falls
when|wenn
before|bevor
while|waehrend
"""

WH_TABLE = """
why|warum
when|wann
how|wie
"""

# Pronouns: en nom, en obj, de nom, de acc, de dat, person.
PRONOUNS = [
    ("I", "me", "ich", "mich", "mir", "1sg"),
    ("you", "you", "du", "dich", "dir", "2sg"),
    ("he", "him", "er", "ihn", "ihm", "3sg"),
    ("she", "her", "sie", "sie", "ihr", "3sg"),
    ("we", "us", "wir", "uns", "uns", "1pl"),
    ("they", "them", "sie", "sie", "ihnen", "3pl"),
]
YOU_FORMAL = ("you", "you", "Sie", "Sie", "Ihnen", "2pol")  # 30% of "you"

# Possessives: en -> German ein-word stem ("your" follows du/Sie).
POSSESSIVES = [("my", "mein"), ("his", "sein"), ("her", "ihr"), ("our", "unser"),
               ("their", "ihr"), ("your", "dein/Ihr")]

# Finite forms for persons 1sg 2sg 3sg 1pl 3pl (formal Sie = 3pl).
AUX_FORMS = {
    "haben": ("habe", "hast", "hat", "haben", "haben"),
    "sein": ("bin", "bist", "ist", "sind", "sind"),
    "war": ("war", "warst", "war", "waren", "waren"),
    "werden": ("werde", "wirst", "wird", "werden", "werden"),
    "koennen": ("kann", "kannst", "kann", "koennen", "koennen"),
    "muessen": ("muss", "musst", "muss", "muessen", "muessen"),
    "duerfen": ("darf", "darfst", "darf", "duerfen", "duerfen"),
    "wollen": ("will", "willst", "will", "wollen", "wollen"),
}


def _rows(table, ncols):
    for line in table.strip().splitlines():
        cells = [c.strip() for c in line.split("|")]
        yield cells + [""] * (ncols - len(cells))


def _alts(cell):
    return tuple(cell.split("/"))


def _noun(en, en_pl, de, de_pl, gender, classes, stem):
    mass = de_pl == "-"
    variants = []
    for i, sg in enumerate(_alts(de)):
        pl = sg if mass else _alts(de_pl)[i]
        variants.append(NounDe(sg, pl, _alts(gender)[i], _alts(stem)[i] if stem else sg))
    return Noun(en, en if mass else en_pl, tuple(classes.split()), tuple(variants))


def _verb(kind, base, s3, past, de, irr, part, aux, subj, obj):
    variants = []
    for i, full in enumerate(_alts(de)):
        prefix, _, inf = full.rpartition("+")
        forms = tuple(_alts(irr)[i].split()) if irr else ()
        variants.append(VerbDe(inf, prefix, forms, _alts(part)[i]))
    return Verb(kind, (base, s3, past), aux, tuple(subj.split()), tuple(obj.split()),
                tuple(variants))


def _words(table, ncols=4):
    return [Word(r[0], _alts(r[1]), r[2], tuple(r[3].split())) for r in _rows(table, ncols)]


NOUNS = [_noun(*r) for r in _rows(NOUN_TABLE, 7)]
NOUN_BY_EN = {n.en: n for n in NOUNS}
COMPOUNDS = {}  # head en -> list of modifier nouns
for _line in COMPOUND_TABLE.strip().splitlines():
    _head, _mods = _line.split(":")
    COMPOUNDS[_head.strip()] = [NOUN_BY_EN[m] for m in _mods.split()]
VERBS = [_verb(*r) for r in _rows(VERB_TABLE, 10)]
ADJECTIVES = _words(ADJ_TABLE)
TIME_ADVERBS = _words(TIME_TABLE)
MANNER_ADVERBS = _words(MANNER_TABLE)
PREPOSITIONS = [Word(r[0], (r[1],), r[2] + " " + r[4], tuple(r[3].split()))
                for r in _rows(PREP_TABLE, 5)]  # extra = "case use"
CONJUNCTIONS = _words(CONJ_TABLE)
WH_WORDS = _words(WH_TABLE)
