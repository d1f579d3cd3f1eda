"""Sentence splitting, word tokenization and word counting for the IFEval checkers.

The reference scorer counts sentences with NLTK's pretrained English Punkt model and splits words
for ``change_case:capital_word_frequency`` with NLTK's ``word_tokenize`` (Punkt, then Treebank-style
rules). NLTK and its data are not dependencies of sisu, so this module re-derives both behaviours:

* :func:`split_sentences` follows Punkt's decision procedure (candidate boundaries at ``.?!``, a small
  context around each, abbreviation / ellipsis / initial / ordinal handling, boundary realignment)
  with hand-written, probe-calibrated word lists in place of the trained model's tables.
* :func:`word_tokens` applies Treebank-style splitting rules (quotes, punctuation, contractions) to
  each sentence.

Both are written for agreement on real model output, not for linguistic quality; see the README
for measured agreement and the known gaps. ``punkt`` (NLTK) can be selected instead via
:func:`make_text_tools`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from data.errors import ConfigError

# --------------------------------------------------------------------------------------------------
# Word counting (length_constraints:number_words): the reference counts runs of \w characters.

_WORD_RUN = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Number of ``\\w+`` runs, the reference's definition of a word."""
    return sum(1 for _ in _WORD_RUN.finditer(text))


# --------------------------------------------------------------------------------------------------
# Language rules for the sentence splitter.


@dataclass(frozen=True)
class SplitRules:
    """Word lists that stand in for a trained Punkt model.

    ``abbreviations``: lower-cased tokens (without the final period) that do not end a sentence.
    ``openers``: lower-cased words that, capitalised after an abbreviation or ellipsis, start a new
    sentence. ``lowercase_words``: words known to occur in lower case; a capitalised one after a
    single-letter initial starts a new sentence (a capitalised unknown word is taken for a name).
    ``number_continuations``: words that, after a period-final number, do not start a new sentence.
    """

    name: str
    abbreviations: frozenset[str]
    openers: frozenset[str]
    lowercase_words: frozenset[str]
    number_continuations: frozenset[str] = frozenset()


def _words(block: str) -> frozenset[str]:
    return frozenset(block.split())


# Abbreviations the English model knows, checked one by one against its behaviour. Everyday
# shorthands such as "etc", "e.g", "i.e", "approx", "fig" and "no" are deliberately absent: the
# English model ends a sentence after them, and agreeing with it is the point.
_EN_ABBREVIATIONS = _words(
    """
    mr mrs ms dr prof st jr sr messrs gen col lt maj adm sen rep reps inc ltd corp co cos bros cie
    vs v ave jan feb aug sep sept oct nov dec tues wed fri u.s u.s.a u.k u.n u.s.s.r a.m p.m ph.d
    m.b.a d.c n.y l.a ft mg yr calif conn fla ga ill kan ky mich minn nev okla ore pa tenn va vt wash
    wis ariz ala colo n.j n.c n.h n.d n.m s.c w.va ok chg sw j.k a.a d.h a.d
    c d e f g h k l m n p r s t v w
    """
)

# Capitalised after an abbreviation or an ellipsis, these open a new sentence in the English model
# (measured by probing "Well... Word foo bar." for each word of a hand-written vocabulary).
_EN_OPENERS = _words(
    """
    above according afterward afterwards almost along although always among anything anyway apply
    approach ask being believe besides better between body both build but call car certainly check
    choose compare conclusion consider contact create currently describe despite different discuss
    does doing done early either else enjoy ensure entire especially even eventually example except
    explain fact final finally follow friend furthermore given happen he her here hers herself him
    himself hour however i idea if imagine important importantly in include indeed initially instead
    it kid learn least likewise many meanwhile member method minute mix moreover most mother myself
    naturally need neither nevertheless nonetheless nor note nothing number okay otherwise ours
    ourselves overall person personal personally play please political possibly previously private
    probably problem program provide question regardless remember remove result results right same
    seem serve similar similarly simple since so solution some someone sometimes soon specific
    specifically step still subsequently such surely task team thank thanks the them themselves
    there thereafter therefore these they think this though through thus tip together towards true
    try typically ultimately under understand unfortunately unless unlike upon us very warning were
    when whenever whereas wherever whether which while whole whom within without worst yes yet your
    yourself sales separately version fig
    address advantages amount answers appear appeared appendix application asked basic became
    become begin believed built came cannot challenges chart considered continued correct cost
    created decide deep define degree description details die difficult disadvantages discussion
    display edge essay event examples experience features felt file finish followed format gave
    grew happened hear helped hold image included ingredients input inside instructions into
    kept kill killed knew known language learned led list lived looked lose loved mean message
    moved multiple necessary needed objective offered onto opened page paid pass passed phone
    played preparation principle process provided pull pulled put quantity questions ran range
    region remain remained require required requirements response sat saw scale section seemed
    send sent sentence served shape significant single sit size skills sorry sort source speak
    speech spend spent spoke stand stayed stood stopped structure style suggest suggested
    technique text theory thought throughout tips title took tried turn type understood unique
    uses wait waited walk walked wanted watched went win worked written
    """
)

# Common words the English model has seen in lower case (probe: "It is plan B. Word foo bar.").
_EN_LOWERCASE = _words(
    """
    a about above according actually after afterward afterwards again against all almost along also
    although always among an and another any anyway anything around as at back basically be because
    before being below besides best better between both but by can certainly clearly consider could
    currently definitely despite do does doing done during each either else especially even
    eventually every everyone everything example except finally first for from furthermore
    generally get given go good great had has have having he her here hers herself him himself his
    how however if imagine importantly in indeed initially instead is it its itself just keep last
    later let like likewise look many maybe me meanwhile might more moreover most mostly much must
    my myself neither never nevertheless next no nobody none nonetheless nor not nothing now
    obviously of off often on once one only or other otherwise our ours ourselves out over overall
    perhaps personally please plus possibly previously probably rather really regardless remember
    right second see several she should similarly since so some someone something sometimes soon
    specifically still subsequently such sure surely than thank thanks that the their them
    themselves then there thereafter therefore these they third this those though through thus to
    today together too toward towards typically ultimately under unfortunately unless unlike until
    up upon us usually very was we well were what whatever when whenever where whereas wherever
    whether which while who whom whose why will with within without would yes yet you your yourself
    answer step note tip warning summary conclusion introduction background example solution result
    results reason option plan approach method idea problem question task goal key main important
    final simple quick short long new old small large high low full free open clear true false real
    early late hard easy worst least few little less same different similar certain whole entire
    general specific common special public private human natural social local national
    international political economic financial legal medical technical personal professional make
    use try add create write read check start stop run take give find think know feel seem call ask
    tell show help need want work play move live believe bring happen provide include continue set
    learn change lead understand follow stay choose avoid ensure remove apply store build notice
    enjoy visit contact join share review compare explain describe discuss mix heat serve time year
    day week month people person man woman child world life hand part place case point group
    company number fact water money story book word business issue side kind head house service
    friend father mother power hour game line end member law car city community name president team
    minute kid body information school family student country area system program government
    address advantages am amount answers appear appeared appendix application are art asked
    assistant average basic became become been began begin believed benefits bottom bought
    brought built buy called came cannot category center challenges changed chapter chart class
    close code color come complex computer concept considered continued control correct cost
    created cut data decide decided deep define degree description design details device did die
    died difficult disadvantages discussion display down due edge education essay event examples
    expect expected experience fall features fell felt file finish followed form format found
    front future gave gets gone got grew grow guide happened hear heard held helped history hold
    hope identify image included ingredients input inside instructions into kept kill killed
    knew known language learned leave led left letter level link list lived looked looks lose
    lost love loved machine made makes mark materials may mean meant media meet message met
    methods middle model moved multiple music necessary needed network notes objective offer
    offered office onto opened order outline output outside own page paid party pass passed
    pattern pay phone photo picture played policy popular preparation price principle print
    procedure process project provided pull pulled put quality quantity questions raise raised
    ran range rate reach reached region remain remained report reported require required
    requirements response return role rule said sat saw say says scale section seemed seen sell
    send sent sentence series served shape showed sign significant single sit site size skills
    software sold song sorry sort source speak speech spend spent spoke stand stayed steps stood
    stopped strategy structure style suggest suggested support symbol table taken technique test
    text theory thought throughout tips title told took tool top tried turn type understood
    unique used uses value video wait waited walk walked wanted watch watched way went win won
    worked works written wrong wrote
    """
)

# After a list number such as "1." the English model keeps these on the same sentence.
_EN_NUMBER_CONTINUATIONS = _words(
    "international commodities credit corrections financing business leisure dividend review abreast "
    "who letters notable insider"
)

ENGLISH = SplitRules(
    name="en",
    abbreviations=_EN_ABBREVIATIONS,
    openers=_EN_OPENERS,
    lowercase_words=_EN_LOWERCASE,
    number_continuations=_EN_NUMBER_CONTINUATIONS,
)

# Finnish is not bound to a reference; the lists follow Finnish usage (esim., ns., mm., jne., klo,
# ordinals such as "6. joulukuuta" are handled by the number rule).
FINNISH = SplitRules(
    name="fi",
    abbreviations=_words(
        """
        esim ns mm jne yms tms ym ks kts vrt ts klo n s v t k p kk vk vs tri prof dos fil kand
        maist lic dipl ins os puh kpl milj mrd nk pj pvm ko em ao huom yl ed engl ruots suom lat
        kreik ark arv alk alv ekr jkr eaa jaa ca c sis ulk oik lis apul valt yht nro mr mrs dr
        """
    ),
    openers=_words(
        """
        se ne tämä nämä tuo nuo hän he me te minä sinä sitten siksi kun jos mutta ja sekä lisäksi
        näin nyt myös siis esimerkiksi toisaalta kuitenkin silti joten koska vaikka ennen lopuksi
        aluksi ensin toiseksi kolmanneksi yhteenvetona siinä siellä tässä täällä kaikki monet useimmat
        jokainen jotkut voit voitte muista huomaa kiitos kyllä ei
        """
    ),
    lowercase_words=_words(
        """
        se ne tämä nämä tuo nuo hän he me te minä sinä sitten siksi kun jos mutta ja sekä lisäksi
        näin nyt myös siis esimerkiksi toisaalta kuitenkin silti joten koska vaikka ennen lopuksi
        aluksi ensin toiseksi kolmanneksi yhteenvetona siinä siellä tässä täällä kaikki monet useimmat
        jokainen jotkut voit voitte muista huomaa kiitos kyllä ei vastaus kysymys esimerkki
        """
    ),
)

_RULES_BY_LANGUAGE = {"en": ENGLISH, "fi": FINNISH}


def rules_for(language: str) -> SplitRules:
    """Split rules for a language code; languages without their own rules use English ones."""
    return _RULES_BY_LANGUAGE.get(language, ENGLISH)


# --------------------------------------------------------------------------------------------------
# Punkt-compatible sentence splitting.

# Characters that cannot occur inside a Punkt word token (besides the period); they also let a
# period that touches them count as a potential sentence end.
_NON_WORD = ")\";}]*:@'({[\u2018\u2019\u201c\u201d\xab\xbb?!"
_NON_WORD_CLASS = "[" + re.escape(_NON_WORD) + "]"
_MULTI_PUNCT = r"(?:-{2,}|\.{2,}|(?:\.\s){2,}\.)"
_NO_WORD_START = re.escape('("`{[:;&#*@)}]-,')

_CANDIDATE = re.compile(r"[.?!](?=(?P<after>" + _NON_WORD_CLASS + r"|\s+(?P<next>\S+)))")
_CONTEXT_TOKEN = re.compile(
    rf"{_MULTI_PUNCT}"  # "--", "...", ". . ."
    rf"|(?=[^{_NO_WORD_START}])\S+?"  # a word, up to whitespace, punctuation or a final comma
    rf"(?=\s|$|{_NON_WORD_CLASS}|{_MULTI_PUNCT}|,(?=$|\s|{_NON_WORD_CLASS}|{_MULTI_PUNCT}))"
    r"|\S"  # any other single character
)
_NUMBER_TOKEN = re.compile(r"^-?[.,]?\d[\d,.-]*\.?$")
_INITIAL_TOKEN = re.compile(r"[^\W\d]\.$")
_ELLIPSIS_TOKEN = re.compile(r"\.\.+$")
_REALIGN = re.compile("[\"')\\]}\u2018\u2019\u201c\u201d\xab\xbb]+?(?:\\s+|(?=--)|$)", re.MULTILINE)
# Only ASCII whitespace separates the word before a candidate boundary (a Punkt detail).
_ASCII_SPACE = " \t\n\r\x0b\x0c"
_INTERNAL_PUNCT = ";:,.!?"
_NUMBER = "##number##"


class _Tok:
    """A context token with Punkt's first-pass annotations."""

    __slots__ = ("text", "kind", "sentbreak", "abbr", "ellipsis")

    def __init__(self, text: str, rules: SplitRules) -> None:
        self.text = text
        self.kind = _NUMBER_TOKEN.sub(_NUMBER, text.lower())
        self.sentbreak = False
        self.abbr = False
        self.ellipsis = False
        if text in (".", "?", "!"):
            self.sentbreak = True
        elif _ELLIPSIS_TOKEN.match(text):
            self.ellipsis = True
        elif text.endswith(".") and not text.endswith(".."):
            stem = text[:-1].lower()
            if stem in rules.abbreviations or stem.split("-")[-1] in rules.abbreviations:
                self.abbr = True
            else:
                self.sentbreak = True

    def kind_without_period(self) -> str:
        if len(self.kind) > 1 and self.kind.endswith("."):
            return self.kind[:-1]
        return self.kind

    def kind_without_sentence_period(self) -> str:
        return self.kind_without_period() if self.sentbreak else self.kind


def _second_pass(first: _Tok, second: _Tok, rules: SplitRules) -> None:
    """Revise ``first``'s annotation using the token after it (Punkt's token-context pass).

    Punkt consults case statistics from its training corpus here. The stand-ins: a capitalised
    word in ``rules.openers`` opens a sentence after an abbreviation or ellipsis; a lower-case
    word or internal punctuation never does after an initial or a number; a capitalised word
    outside ``rules.lowercase_words`` after an initial is a name (as in "J. Smith").
    """
    if not first.text.endswith("."):
        return
    word = first.kind_without_period()
    next_word = second.kind_without_sentence_period()
    is_initial = _INITIAL_TOKEN.match(first.text) is not None
    upper = second.text[0].isupper()
    if word == _NUMBER and next_word in rules.number_continuations:
        first.sentbreak = False
        first.abbr = True
        return
    if (first.abbr or first.ellipsis) and not is_initial and upper and next_word in rules.openers:
        first.sentbreak = True
        return
    if is_initial or word == _NUMBER:
        if second.text in _INTERNAL_PUNCT or second.text[0].islower():
            first.sentbreak = False
            first.abbr = True
        elif is_initial and upper and next_word not in rules.lowercase_words:
            first.sentbreak = False
            first.abbr = True


def _context_has_break(context: str, rules: SplitRules) -> bool:
    tokens = [_Tok(t, rules) for line in context.split("\n") for t in _CONTEXT_TOKEN.findall(line)]
    for i in range(len(tokens) - 1):
        _second_pass(tokens[i], tokens[i + 1], rules)
        if tokens[i].sentbreak:
            return True
    return False


def _last_ascii_space(text: str) -> int:
    return max(text.rfind(ch) for ch in _ASCII_SPACE)


def _candidates(text: str):
    """Yield (match, context) for each potential boundary, merging runs such as ``?!`` or ``!!!``."""
    prev_match = None
    prev_start = prev_stop = 0
    for match in _CANDIDATE.finditer(text):
        space = _last_ascii_space(text[prev_stop : match.start()])
        # Punkt treats "no space" and "space at offset 0" alike; keep that quirk.
        start = prev_stop + space + 1 if space > 0 else prev_start
        if prev_match is not None and prev_stop <= start:
            yield prev_match, text[prev_start:prev_stop] + prev_match.group() + prev_match.group("after")
        prev_match, prev_start, prev_stop = match, start, match.start()
    if prev_match is not None:
        yield prev_match, text[prev_start:prev_stop] + prev_match.group() + prev_match.group("after")


def sentence_spans(text: str, rules: SplitRules = ENGLISH) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``, Punkt style."""
    raw: list[tuple[int, int]] = []
    last = 0
    for match, context in _candidates(text):
        if _context_has_break(context, rules):
            raw.append((last, match.end()))
            last = match.start("next") if match.group("next") else match.end()
    raw.append((last, len(text.rstrip())))

    # Closing quotes and brackets after a boundary belong to the sentence before it.
    spans: list[tuple[int, int]] = []
    shift = 0
    for i, (start, stop) in enumerate(raw):
        start += shift
        if i + 1 == len(raw):
            if start < stop:
                spans.append((start, stop))
            continue
        next_start, next_stop = raw[i + 1]
        m = _REALIGN.match(text, next_start, next_stop)
        if m:
            spans.append((start, next_start + len(m.group(0).rstrip())))
            shift = m.end() - next_start
        else:
            shift = 0
            if start < stop:
                spans.append((start, stop))
    return spans


def split_sentences(text: str, rules: SplitRules = ENGLISH) -> list[str]:
    """Split ``text`` into sentences the way the reference's Punkt model does (approximately)."""
    return [text[a:b] for a, b in sentence_spans(text, rules)]


# --------------------------------------------------------------------------------------------------
# Treebank-style word tokenization (what nltk.word_tokenize does within one sentence).

_CLOSERS = "\\]\\)}>\"'\xbb\u201d\u2019"
_TB_BEFORE_PAD: list[tuple[re.Pattern[str], str]] = [
    # opening quotes and backtick runs stand alone
    (re.compile("([\xab\u201c\u2018\u201e]|`+)"), r" \1 "),
    (re.compile(r'^"'), "``"),
    (re.compile("(``)"), r" \1 "),
    (re.compile(r"([ (\[{<])(\"|'')"), r"\1 `` "),
    # an opening apostrophe that does not begin a contraction suffix
    (re.compile(r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)"), r"\1 "),
    # the sentence-final period, with any closing brackets or quotes after it
    (re.compile("([^.])(\\.)([" + _CLOSERS + " ]*+)\\s*$"), r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}"), r" \g<0> "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile("[\u2012-\u2015]"), r" \g<0> "),
    (re.compile("([^.])(\\.)([\\]\\)}>\"']*)\\s*$"), r"\1 \2\3 "),
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"[*]"), r" \g<0> "),
    (re.compile(r"[\]\[(){}<>]"), r" \g<0> "),
    (re.compile(r"--"), r" -- "),
]
_TB_AFTER_PAD: list[tuple[re.Pattern[str], str]] = [
    (re.compile("([\xbb\u201d\u2019])"), r" \1 "),
    (re.compile(r"''"), " '' "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"\s+"), " "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
    # fused forms such as "cannot" and "gonna" are two tokens
    (re.compile(r"(?i)\b(can)(not)\b"), r" \1 \2 "),
    (re.compile(r"(?i)\b(d)('ye)\b"), r" \1 \2 "),
    (re.compile(r"(?i)\b(gim)(me)\b"), r" \1 \2 "),
    (re.compile(r"(?i)\b(gon)(na)\b"), r" \1 \2 "),
    (re.compile(r"(?i)\b(got)(ta)\b"), r" \1 \2 "),
    (re.compile(r"(?i)\b(lem)(me)\b"), r" \1 \2 "),
    (re.compile(r"(?i)\b(more)('n)\b"), r" \1 \2 "),
    (re.compile(r"(?i)\b(wan)(na)(?=\s)"), r" \1 \2 "),
    (re.compile(r"(?i) ('t)(is)\b"), r" \1 \2 "),
    (re.compile(r"(?i) ('t)(was)\b"), r" \1 \2 "),
]


def treebank_tokens(sentence: str) -> list[str]:
    """Tokens of one sentence under Treebank-style splitting rules."""
    for pattern, repl in _TB_BEFORE_PAD:
        sentence = pattern.sub(repl, sentence)
    sentence = f" {sentence} "
    for pattern, repl in _TB_AFTER_PAD:
        sentence = pattern.sub(repl, sentence)
    return sentence.split()


def word_tokens(text: str, rules: SplitRules = ENGLISH) -> list[str]:
    """Word tokens of ``text``: sentence split, then Treebank-style rules per sentence."""
    return [tok for sentence in split_sentences(text, rules) for tok in treebank_tokens(sentence)]


# --------------------------------------------------------------------------------------------------
# Selecting an implementation.


@dataclass(frozen=True)
class TextTools:
    """The sentence counter and word tokenizer a scoring run uses."""

    name: str
    count_sentences: Callable[[str], int]
    word_tokens: Callable[[str], list[str]]


def make_text_tools(splitter: str, language: str) -> TextTools:
    """Build sentence/word tools: ``builtin`` (this module) or ``punkt`` (NLTK, when installed).

    ``language`` picks the split rules or Punkt model ("en" uses English; "fi" Finnish; others
    English). Raises ConfigError for an unknown splitter or when ``punkt`` cannot be loaded.
    """
    if splitter == "builtin":
        return _builtin_tools(language)
    if splitter == "punkt":
        return _punkt_tools(language)
    raise ConfigError(f"unknown sentence_splitter {splitter!r}; expected 'builtin' or 'punkt'")


@cache
def _builtin_tools(language: str) -> TextTools:
    rules = rules_for(language)
    return TextTools(
        name="builtin",
        count_sentences=lambda text: len(sentence_spans(text, rules)),
        word_tokens=lambda text: word_tokens(text, rules),
    )


@cache
def _punkt_tools(language: str) -> TextTools:
    model = {"en": "english", "fi": "finnish"}.get(language, "english")
    try:
        import nltk  # optional: only for sentence_splitter="punkt"
        from nltk.tokenize import PunktTokenizer

        tokenizer = PunktTokenizer(model)
        word_tokenize = nltk.word_tokenize
    except ImportError:
        raise ConfigError("sentence_splitter='punkt' needs nltk, which is not installed") from None
    except (LookupError, OSError, ValueError):
        # nltk's own message spans a dozen lines; the CLI reports errors on one line.
        raise ConfigError(
            f"sentence_splitter='punkt' needs the Punkt data tokenizers/punkt_tab/{model} "
            "(set NLTK_DATA to a folder that holds it)"
        ) from None
    return TextTools(
        name="punkt",
        count_sentences=lambda text: len(tokenizer.tokenize(text)),
        word_tokens=lambda text: word_tokenize(text, language=model),
    )
