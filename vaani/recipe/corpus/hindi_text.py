"""Hindi text for the synthetic corpus: common words and a seeded sentence generator.

The bundled model can only be as good as the text it hears, so sentences come from clause
templates with gender, number and tense agreement (they sound like Hindi to espeak-ng and
to a listener) over a few hundred everyday words. Every word uses only the letters of
`vaani.hindi.LETTERS` (nukta written as a separate mark), so transcripts of the bundled
model and of indicwav2vec-hindi share one alphabet.

Which split a sentence belongs to is a stable hash of its text: train, validation and test
never share a sentence whatever sizes or seeds are asked for, and any sentence's split can
be checked later, as the tests do with sentences made at test time.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

SPLITS = ("train", "validation", "test")
MIN_WORDS = 2
MAX_WORDS = 12

# Percent of all sentences that fall in each held-out split (the rest is train).
_TEST_PERCENT = 5
_VALIDATION_PERCENT = 5


@dataclass(frozen=True)
class Noun:
    word: str
    gender: str  # "m" or "f"


@dataclass(frozen=True)
class Subject:
    """Who does something; ``person`` picks the auxiliary and the future ending."""

    words: tuple[str, ...]
    gender: str  # "m", "f" or "pl"
    person: str  # "1sg", "2", "3sg", "pl"


def _words(text: str) -> list[str]:
    """Tables are written as space-separated strings: easier to read and check than lists."""
    return text.split()


def _nouns(gender: str, words: str) -> list[Noun]:
    return [Noun(word, gender) for word in _words(words)]


# People. Names and kinship words are the subjects of most sentences.
MALE_PEOPLE = _nouns(
    "m",
    "लड़का आदमी बच्चा पिता भाई दादा नाना दोस्त शिक्षक डॉक्टर किसान राजा बेटा पड़ोसी मालिक "
    "लेखक गायक छात्र मज़दूर सिपाही नेता चाचा मामा दुकानदार ड्राइवर पुजारी",
)
FEMALE_PEOPLE = _nouns(
    "f",
    "लड़की औरत माँ बहन दादी नानी रानी बेटी चाची मामी पत्नी शिक्षिका छात्रा नर्स",
)
MALE_NAMES = _words("राम मोहन रवि अमित अर्जुन राहुल विजय सुरेश श्याम गोपाल करण दीपक")
FEMALE_NAMES = _words("सीता गीता प्रिया सुनीता मीरा आशा कमला अनीता पूजा नेहा राधा लक्ष्मी")
PLURAL_PEOPLE = _words("बच्चे लड़के लोग किसान छात्र दोस्त")

# Possessive stems: + ा before a masculine singular noun, + ी feminine, + े plural.
POSSESSIVE_STEMS = _words("मेर तुम्हार हमार उसक आपक इसक उनक")

# Things, grouped by what can be done with them.
FOOD = _nouns("m", "खाना चावल फल आम केला सेब अंडा आलू टमाटर समोसा पराठा") + _nouns(
    "f", "रोटी दाल मिठाई सब्ज़ी खिचड़ी पूरी"
)
DRINKS = _nouns("m", "पानी दूध शरबत रस") + _nouns("f", "चाय कॉफ़ी लस्सी")
READING = _nouns("m", "अख़बार पत्र सवाल जवाब") + _nouns("f", "किताब चिट्ठी कहानी कविता")
CLOTHES = _nouns("m", "कुर्ता चश्मा स्वेटर") + _nouns("f", "टोपी घड़ी कमीज़ साड़ी")
THINGS = _nouns("m", "फ़ोन दरवाज़ा खिलौना थैला टिकट फूल बर्तन कंबल छाता बटुआ डिब्बा शीशा कागज़ बिस्तर") + _nouns(
    "f", "कलम गाड़ी साइकिल कुर्सी मेज़ खिड़की दवा रस्सी चाबी तस्वीर गेंद पतंग बोतल"
)
MUSIC = _nouns("m", "गाना गीत भजन संगीत") + _nouns("f", "धुन")
TASKS = _nouns("m", "काम इंतज़ार") + _nouns("f", "बात मदद खेती सफ़ाई पढ़ाई तैयारी मेहनत")

# Verb stems (the form before ना), by the kind of object they take.
VERBS_FOR: dict[str, list[str]] = {
    "food": _words("खा पका ख़रीद बेच ला काट माँग बना"),
    "drinks": _words("पी बना ला माँग ख़रीद"),
    "reading": _words("पढ़ लिख भेज ला ढूँढ"),
    "clothes": _words("पहन धो ख़रीद ढूँढ उतार बेच"),
    "things": _words("देख ढूँढ उठा रख ला ख़रीद बेच माँग पकड़ ले दे"),
    "music": _words("सुन गा सीख"),
    "tasks": ["कर"],
}
OBJECTS_OF: dict[str, list[Noun]] = {
    "food": FOOD,
    "drinks": DRINKS,
    "reading": READING,
    "clothes": CLOTHES,
    "things": THINGS,
    "music": MUSIC,
    "tasks": TASKS,
}
INTRANSITIVE = _words("सो दौड़ चल बैठ हँस रो खेल नहा उठ रुक तैर नाच बोल सोच जाग घूम गिर")
MOTION = _words("जा आ पहुँच लौट")

PLACES = _words(
    "घर स्कूल बाज़ार शहर गाँव दफ़्तर अस्पताल मंदिर बगीचे नदी खेत जंगल पहाड़ स्टेशन दुकान "
    "कमरे रसोई छत सड़क मैदान पुस्तकालय होटल समुद्र कॉलेज बैंक डाकघर पार्क"
)
CITIES = _words("दिल्ली मुंबई कोलकाता पटना जयपुर लखनऊ भोपाल चेन्नई पुणे आगरा वाराणसी")
PLACE_POSTPOSITIONS = _words("में पर के_पास के_बाहर के_अंदर के_पीछे के_सामने")

# Adjectives ending in ा change with gender and number; the others never change.
INFLECTING_ADJECTIVES = _words(
    "अच्छा बड़ा छोटा पुराना काला पीला हरा नीला ठंडा मीठा खट्टा लंबा ऊँचा गंदा सस्ता महँगा "
    "ताज़ा प्यारा गहरा भूखा प्यासा मोटा पतला सीधा गीला सूखा कड़वा सच्चा बुरा पक्का कच्चा हल्का"
)
PLAIN_ADJECTIVES = _words(
    "सुंदर लाल सफ़ेद गरम तेज़ साफ़ भारी खुश उदास बीमार आसान मुश्किल ज़रूरी अमीर गरीब होशियार "
    "ईमानदार बहादुर शांत मज़बूत कमज़ोर नरम ख़ाली व्यस्त तैयार"
)
INTENSIFIERS = _words("बहुत काफ़ी थोड़ा ज़्यादा बिलकुल")

NUMBERS = _words("दो तीन चार पाँच छह सात आठ नौ दस बीस पचास सौ")

# When something happens, by the tense it goes with.
TIMES: dict[str, list[str]] = {
    "present": ["आज", "रोज़", "हमेशा", "सुबह", "शाम_को", "रात_को", "हर_दिन", "कभी_कभी", "अक्सर"],
    "progressive": ["अभी", "आज", "इस_समय", "अभी_भी"],
    "future": ["कल", "परसों", "अगले_हफ़्ते", "अगले_साल", "जल्दी", "बाद_में", "शाम_को"],
    "past": ["पहले", "बचपन_में", "पिछले_साल", "उन_दिनों", "हर_रोज़"],
}
WEEKDAYS = _words("सोमवार मंगलवार बुधवार गुरुवार शुक्रवार शनिवार रविवार")

CONJUNCTIONS = _words("और लेकिन क्योंकि इसलिए जबकि फिर")


def _agree(adjective: str, gender: str) -> str:
    """Inflect an adjective (or possessive, or participle) ending in ा for ``gender``."""
    if adjective == "नया":
        return {"m": "नया", "f": "नई", "pl": "नए"}[gender]
    if not adjective.endswith("ा"):
        return adjective
    return adjective[:-1] + {"m": "ा", "f": "ी", "pl": "े"}[gender]


def _plural(noun: Noun) -> str:
    """Direct plural of a noun: किताब → किताबें, रोटी → रोटियाँ, केला → केले, आम → आम."""
    word = noun.word
    if noun.gender == "f":
        if word.endswith("ी"):
            return word[:-1] + "ियाँ"
        if word.endswith("ा"):
            return word + "एँ"
        return word + "ें"
    if word.endswith("ा"):
        return word[:-1] + "े"
    return word


_AUXILIARY = {"1sg": "हूँ", "2": "हो", "3sg": "है", "pl": "हैं"}
_PAST_AUXILIARY = {"m": "था", "f": "थी", "pl": "थे"}
_VOWEL_ENDINGS = ("ा", "ो", "ू", "ी", "े")


def _future(stem: str, subject: Subject) -> str:
    """Future tense: पढ़ेगा, खाएगी, जाएँगे, लूँगा, पिओगे."""
    special = {"ले": ("लूँ", "ले", "लो", "लें"), "दे": ("दूँ", "दे", "दो", "दें"), "पी": ("पिऊँ", "पिए", "पिओ", "पिएँ")}
    if stem in special:
        first, third, second, plural = special[stem]
    elif stem.endswith(_VOWEL_ENDINGS):
        first, third, second, plural = stem + "ऊँ", stem + "ए", stem + "ओ", stem + "एँ"
    else:
        first, third, second, plural = stem + "ूँ", stem + "े", stem + "ो", stem + "ें"
    gender_ending = {"m": "गा", "f": "गी", "pl": "गे"}
    if subject.person == "1sg":
        return first + gender_ending[subject.gender]
    if subject.person == "2":
        return second + ("गी" if subject.gender == "f" else "गे")
    if subject.person == "3sg":
        return third + gender_ending[subject.gender]
    return plural + ("गी" if subject.gender == "f" else "गे")


def verb_phrase(stem: str, subject: Subject, tense: str) -> list[str]:
    """The words of a finite verb: habitual present, progressive, future or past habitual."""
    number_gender = "pl" if subject.gender == "pl" or subject.person == "2" else subject.gender
    if tense == "present":
        return [_agree(stem + "ता", number_gender), _AUXILIARY[subject.person]]
    if tense == "progressive":
        return [stem, _agree("रहा", number_gender), _AUXILIARY[subject.person]]
    if tense == "future":
        return [_future(stem, subject)]
    return [_agree(stem + "ता", number_gender), _PAST_AUXILIARY[number_gender]]


def _expand(words: list[str]) -> list[str]:
    """Multi-word entries are written with ``_`` in the tables; split them into words."""
    return [part for word in words for part in word.split("_")]


class SentenceMaker:
    """Draws sentences from the clause templates with its own `random.Random`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.templates: list[Callable[[], list[str]]] = [
            self.transitive,
            self.transitive,
            self.transitive,
            self.motion,
            self.motion,
            self.intransitive,
            self.intransitive,
            self.description,
            self.person_description,
            self.liking,
            self.location,
            self.counting,
            self.question,
            self.command,
            self.compound,
        ]

    def sentence(self) -> str:
        while True:
            words = _expand(self.rng.choice(self.templates)())
            if MIN_WORDS <= len(words) <= MAX_WORDS:
                return " ".join(words)

    # Pieces.
    def subject(self) -> Subject:
        rng = self.rng
        kind = rng.random()
        if kind < 0.15:
            return rng.choice(
                [
                    Subject(("मैं",), rng.choice("mf"), "1sg"),
                    Subject(("हम",), "pl", "pl"),
                    Subject(("तुम",), rng.choice("mf"), "2"),
                    Subject(("आप",), "pl", "pl"),
                    Subject(("वह",), rng.choice("mf"), "3sg"),
                    Subject(("वे",), "pl", "pl"),
                ]
            )
        if kind < 0.45:
            gender = rng.choice("mf")
            return Subject((rng.choice(MALE_NAMES if gender == "m" else FEMALE_NAMES),), gender, "3sg")
        if kind < 0.85:
            noun = rng.choice(MALE_PEOPLE + FEMALE_PEOPLE)
            return Subject((*self.determiner(noun.gender), noun.word), noun.gender, "3sg")
        return Subject((*self.determiner("pl"), rng.choice(PLURAL_PEOPLE)), "pl", "pl")

    def determiner(self, gender: str) -> list[str]:
        """Nothing, a possessive (मेरी), or यह/वह/ये/वे; agrees with the noun."""
        choice = self.rng.random()
        if choice < 0.4:
            return []
        if choice < 0.8:
            return [_agree(self.rng.choice(POSSESSIVE_STEMS) + "ा", gender)]
        return [self.rng.choice(["ये", "वे"] if gender == "pl" else ["यह", "वह"])]

    def adjective(self, gender: str) -> str:
        if self.rng.random() < 0.55:
            return _agree(self.rng.choice([*INFLECTING_ADJECTIVES, "नया"]), gender)
        return self.rng.choice(PLAIN_ADJECTIVES)

    def obj(self) -> tuple[Noun, str]:
        kind = self.rng.choice(list(OBJECTS_OF))
        return self.rng.choice(OBJECTS_OF[kind]), kind

    def place(self) -> list[str]:
        if self.rng.random() < 0.25:
            return [self.rng.choice(CITIES), "में"]
        return [self.rng.choice(PLACES), self.rng.choice(PLACE_POSTPOSITIONS)]

    def time(self, tense: str) -> list[str]:
        if self.rng.random() < 0.35:
            return []
        if tense in ("present", "future") and self.rng.random() < 0.2:
            return [self.rng.choice(WEEKDAYS), "को"]
        return [self.rng.choice(TIMES[tense])]

    def tense(self) -> str:
        return self.rng.choice(["present", "present", "progressive", "future", "past"])

    def negate(self, verb: list[str], tense: str) -> list[str]:
        """नहीं before the verb; the habitual present drops its auxiliary as speakers do."""
        if tense == "progressive" or self.rng.random() < 0.75:
            return verb
        if tense == "present":
            return ["नहीं", verb[0]]
        return ["नहीं", *verb]

    # Templates.
    def transitive(self) -> list[str]:
        subject, tense = self.subject(), self.tense()
        noun, kind = self.obj()
        stem = self.rng.choice(VERBS_FOR[kind])
        obj = [noun.word]
        if kind != "tasks" and self.rng.random() < 0.4:
            obj = [self.adjective(noun.gender), noun.word]
        elif kind != "tasks" and self.rng.random() < 0.15:
            obj = [self.rng.choice(NUMBERS), _plural(noun)]
        place = self.place() if self.rng.random() < 0.4 else []
        verb = self.negate(verb_phrase(stem, subject, tense), tense)
        return [*subject.words, *self.time(tense), *place, *obj, *verb]

    def motion(self) -> list[str]:
        subject, tense = self.subject(), self.tense()
        stem = self.rng.choice(MOTION)
        destination = self.rng.choice(PLACES + CITIES)
        where = [destination] if stem in ("जा", "आ") and self.rng.random() < 0.5 else [destination, "से"]
        if stem == "पहुँच":
            where = [destination]
        verb = self.negate(verb_phrase(stem, subject, tense), tense)
        return [*subject.words, *self.time(tense), *where, *verb]

    def intransitive(self) -> list[str]:
        subject, tense = self.subject(), self.tense()
        place = self.place() if self.rng.random() < 0.5 else []
        manner = (
            [self.rng.choice(["जल्दी", "धीरे", "आराम_से", "ख़ुशी_से", "देर_तक"])] if self.rng.random() < 0.3 else []
        )
        verb = self.negate(verb_phrase(self.rng.choice(INTRANSITIVE), subject, tense), tense)
        return [*subject.words, *self.time(tense), *place, *manner, *verb]

    def description(self) -> list[str]:
        noun, _ = self.obj()
        plural = self.rng.random() < 0.25
        gender = "pl" if plural and noun.gender == "m" else noun.gender
        word = _plural(noun) if plural else noun.word
        intensifier = [self.rng.choice(INTENSIFIERS)] if self.rng.random() < 0.5 else []
        auxiliary = "हैं" if plural else "है"
        return [*self.determiner(gender), word, *intensifier, self.adjective(gender), auxiliary]

    def person_description(self) -> list[str]:
        subject = self.subject()
        gender = "pl" if subject.person == "2" else subject.gender
        intensifier = [self.rng.choice(INTENSIFIERS)] if self.rng.random() < 0.5 else []
        negation = ["नहीं"] if self.rng.random() < 0.15 else []
        return [*subject.words, *intensifier, *negation, self.adjective(gender), _AUXILIARY[subject.person]]

    def liking(self) -> list[str]:
        name = self.rng.choice(MALE_NAMES + FEMALE_NAMES + ["मुझे", "हमें", "उसे", "उन्हें", "तुम्हें", "आपको"])
        who = [name] if name.endswith(("े", "ें")) or name == "आपको" else [name, "को"]
        if self.rng.random() < 0.5:
            noun, _ = self.obj()
            thing = [noun.word]
        else:
            thing = [self.rng.choice(INTRANSITIVE + VERBS_FOR["music"]) + "ना"]
        feeling = self.rng.choice([["पसंद", "है"], ["पसंद", "नहीं", "है"], ["अच्छा", "लगता", "है"], ["चाहिए"]])
        return [*who, *thing, *feeling]

    def location(self) -> list[str]:
        noun, _ = self.obj()
        plural = self.rng.random() < 0.3
        word = _plural(noun) if plural else noun.word
        amount = [self.rng.choice(NUMBERS)] if plural and self.rng.random() < 0.5 else []
        return [*amount, word, *self.place(), "हैं" if plural else "है"]

    def counting(self) -> list[str]:
        noun, _ = self.obj()
        where = self.place()
        return [*where, self.rng.choice(NUMBERS), _plural(noun), "हैं"]

    def question(self) -> list[str]:
        subject, tense = self.subject(), self.tense()
        verb = verb_phrase(self.rng.choice(MOTION + INTRANSITIVE), subject, tense)
        kind = self.rng.random()
        if kind < 0.4:
            return ["क्या", *self.transitive()]
        word = self.rng.choice(["कहाँ", "कब", "क्यों", "कैसे", "किसके_साथ"])
        return [*subject.words, word, *verb]

    def command(self) -> list[str]:
        noun, kind = self.obj()
        stem = self.rng.choice(VERBS_FOR[kind])
        polite = {"पी": "पीजिए", "ले": "लीजिए", "दे": "दीजिए", "कर": "कीजिए"}
        familiar = {"पी": "पियो", "ले": "लो", "दे": "दो"}
        if self.rng.random() < 0.5:
            opener = self.rng.choice([["कृपया"], ["आप"], []])
            verb = polite.get(stem, stem + ("इए" if stem.endswith(_VOWEL_ENDINGS) else "िए"))
        else:
            opener = self.rng.choice([["तुम"], []])
            verb = familiar.get(stem, stem + ("ओ" if stem.endswith(_VOWEL_ENDINGS) else "ो"))
        return [*opener, noun.word, verb]

    def compound(self) -> list[str]:
        simple = [self.transitive, self.motion, self.intransitive, self.person_description, self.description]
        first, second = self.rng.choice(simple)(), self.rng.choice(simple)()
        return [*first, self.rng.choice(CONJUNCTIONS), *second]


def split_of(sentence: str) -> str:
    """The split a sentence belongs to, from a stable hash of its text."""
    bucket = int.from_bytes(hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest(), "big") % 100
    if bucket < _TEST_PERCENT:
        return "test"
    if bucket < _TEST_PERCENT + _VALIDATION_PERCENT:
        return "validation"
    return "train"


def sentences(split: str, count: int, seed: int = 0) -> list[str]:
    """``count`` distinct sentences of ``split``; the same arguments give the same list."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    maker = SentenceMaker(random.Random(f"vaani-corpus:{seed}:{split}"))
    chosen: dict[str, None] = {}
    attempts = 0
    while len(chosen) < count:
        attempts += 1
        if attempts > 200 * count + 10_000:
            raise RuntimeError(f"could not draw {count} distinct {split} sentences")
        text = maker.sentence()
        if split_of(text) == split:
            chosen.setdefault(text)
    return list(chosen)


def vocabulary() -> set[str]:
    """Every word the generator can write, from the tables and their inflections."""
    words: set[str] = set()
    for count in range(1, 4001):
        maker = SentenceMaker(random.Random(f"vaani-vocabulary:{count}"))
        words.update(maker.sentence().split())
    return words


def base_words() -> set[str]:
    """The words written in the tables above (before inflection): the corpus's word list."""
    tables: list[list[str]] = [
        [noun.word for noun in MALE_PEOPLE + FEMALE_PEOPLE],
        MALE_NAMES,
        FEMALE_NAMES,
        PLURAL_PEOPLE,
        *([noun.word for noun in nouns] for nouns in OBJECTS_OF.values()),
        *VERBS_FOR.values(),
        INTRANSITIVE,
        MOTION,
        PLACES,
        CITIES,
        PLACE_POSTPOSITIONS,
        INFLECTING_ADJECTIVES,
        PLAIN_ADJECTIVES,
        INTENSIFIERS,
        NUMBERS,
        *TIMES.values(),
        WEEKDAYS,
        CONJUNCTIONS,
    ]
    return {word for table in tables for word in _expand(table)}
