"""Seeded generator of synthetic movie reviews for a 4-class sentiment task.

Labels: 0 strong negative, 1 weak negative (the minority), 2 weak positive,
3 strong positive.  Languages: English ("en") and Korean ("ko").

Why it is built this way
------------------------
The reviews feed tests and benchmarks of the training runner, so the task has
to be *learnable but not trivial*: a tiny BERT trained from scratch for a few
epochs should end well below perfect accuracy, and its accuracy should still
move between epochs.  To get there with no external data:

* Reviews are composed from templates and vocabulary pools (aspects, graded
  sentiment predicates, hedges, intensifiers, verdicts, neutral fillers,
  titles and genres), so texts are short and varied.
* The two weak classes share the same mild and mixed vocabulary and differ by
  subtle cues: which clause comes last in an "X but Y" contrast (the later one
  dominates), "not bad" vs "not great", hedged intensity.  A bag of words
  cannot see clause order, so part of the signal needs a sequence model.
* With small probability strong reviews use mild wording and weak reviews
  concede with strong wording, so class boundaries are fuzzy as in real data.
* Label noise: with probability ``noise`` the text is written for a class
  adjacent to its label (0<->1, 1<->2, 2<->3), as a human annotator might
  err.  Labels are drawn first with exact counts, so ``class_shares`` holds
  whatever the noise.
* No class has a fixed giveaway token: everything is sampled from pools, and
  most words occur in at least two classes.
* Only ``random.Random(seed)`` is used, so output is identical everywhere.
"""

from __future__ import annotations

import random

LABEL_NAMES: list[str] = ["strong_negative", "weak_negative", "weak_positive", "strong_positive"]
_LEVELS = (-2, -1, 1, 2)  # sentiment level of each class


def _p(s: str) -> list[str]:
    return s.split("|")


# Predicates: "~" marks where an intensifier (levels +-2) or hedge (+-1) may go.
_EN = {
    "aspects": _p("acting|plot|soundtrack|ending|visuals|pacing|direction|cast|dialogue|script|"
                  "cinematography|characters|action scenes|humor|score|lead performance|story|"
                  "special effects|editing|villain|jokes|second half"),
    -2: _p("~awful|~terrible|a complete mess|~unbearable|~boring|a total disaster|laughably bad|"
           "~dreadful|~painful to sit through|~lazy|~insulting|the worst thing about it"),
    -1: _p("~dull|~slow|~predictable|~flat|~forgettable|not great|not that good|~weak|"
           "~disappointing|~uneven|a bit of a letdown|~underwhelming|nothing special|~clumsy"),
    1: _p("~decent|~fun|~charming|not bad|not terrible|~enjoyable|~solid|~nice|fine overall|"
          "~watchable|better than expected|~good|~pleasant|~likable"),
    2: _p("~brilliant|~stunning|~perfect|~incredible|~outstanding|~amazing|~unforgettable|"
          "~breathtaking|the best I have seen in years|~flawless|~gorgeous|~masterful"),
    "intens": _p("really |truly |absolutely |incredibly |just |so |||"),
    "hedge-": _p("a bit |a little |somewhat |kind of |rather |pretty |slightly |||"),
    "hedge+": _p("pretty |fairly |somewhat |kind of |mostly |quite |rather |||"),
    "verdict2": _p("A masterpiece.|10/10, would watch again.|One of the best films of the year.|"
                   "Go see it, seriously.|I loved every minute of it.|Easily five stars.|"
                   "An instant classic.|Absolutely worth it."),
    "verdict-2": _p("What a waste of time.|Avoid at all costs.|1/10.|I want my two hours back.|"
                    "One of the worst films I have seen.|Do not bother.|Zero stars if I could.|"
                    "Absolutely not worth it."),
    "verdict1": _p("Worth a watch.|I enjoyed it overall.|Not bad for a weekend.|I would give it a 7.|"
                   "A decent way to spend an evening.|Pleasant enough.|I would probably recommend it."),
    "verdict-1": _p("I expected more.|Probably won't watch it again.|Not great overall.|"
                    "I would give it a 4.|A bit of a letdown.|Could have been better.|Hard to recommend."),
    "meh": _p("It was okay, I guess.|Mixed feelings.|Somewhere in the middle.|Your mileage may vary.|"
              "Hard to say.|Just okay.|I have seen better and worse."),
    "fillers": _p("I watched it with my sister.|Saw it on a Sunday night.|It runs about two hours.|"
                  "The theater was half empty.|I went in knowing nothing about it.|"
                  "My friend picked this one.|Watched it on a long flight.|It is based on a novel."),
    "intros": _p("Just watched {t}.|{t} is a {g} from {y}.|Finally saw {t}, the new {g}.|"
                 "Review of {t} ({g}).|{t}, a {g} I had on my list."),
    "titles": _p("The Last Harbor|Midnight Circus|Paper Moons|Silent Orbit|The Glass Orchard|"
                 "Northern Lights|Blue Ember|The Long Road Home|Iron Tide|City of Echoes"),
    "genres": _p("thriller|romantic comedy|drama|horror film|sci-fi movie|action movie|"
                 "animated film|mystery|war drama|musical"),
    "simple": _p("{A}.|Honestly, {A}.|I thought {A}.|To me, {A}.|{A}, in my opinion."),
    "contrast": _p("{A}, but {B}.|Although {A}, {B}.|{A}. But {B}.|{A}, yet {B}.|"
                   "Sure, {A}, but {B}.|{A}; still, {B}."),
    "both": _p("{A} and {B}.|{A}, and {B}.|{A}. Also, {B}."),
}

_KO = {
    "aspects": _p("연기|스토리|음악|OST|결말|영상미|전개|연출|배우들|대사|캐릭터|액션|분위기|각본|"
                  "편집|주인공|악역|유머|엔딩|후반부|초반|CG"),
    -2: _p("~최악이었|~엉망이었|~형편없었|~끔찍했|~지루해서 죽는 줄 알았|~유치했|보는 내내 괴로웠|"
           "~어이없었|~성의 없었|~한심했|완전히 망했"),
    -1: _p("~지루했|~아쉬웠|~밋밋했|~뻔했|~늘어졌|~별로였|좋진 않았|기대 이하였|~어색했|~평범했|"
           "~산만했|그저 그랬|기대만큼은 아니었"),
    1: _p("~괜찮았|~볼만했|나쁘지 않았|~재밌었|~좋았|~무난했|생각보다 괜찮았|~신선했|~귀여웠|"
          "~깔끔했|기대보다 나았|~즐거웠"),
    2: _p("~완벽했|~훌륭했|~최고였|~압도적이었|~감동적이었|~소름 돋았|~아름다웠|~대단했|~미쳤|"
          "~눈부셨|~환상적이었"),
    "intens": _p("정말 |진짜 |너무 |완전 |엄청 |||"),
    "hedge-": _p("좀 |약간 |조금 |살짝 |다소 |꽤 |||"),
    "hedge+": _p("꽤 |나름 |그럭저럭 |제법 |그런대로 |좀 |||"),
    "verdict2": _p("최고의 영화.|인생 영화 등극.|10점 만점에 10점.|강력 추천합니다.|"
                   "두 번 세 번 봐도 좋을 영화.|올해 최고의 작품이에요.|무조건 보세요."),
    "verdict-2": _p("돈 아깝다.|시간 낭비였어요.|보지 마세요.|1점도 아깝다.|올해 최악의 영화.|"
                    "중간에 나오고 싶었어요.|이걸 돈 주고 봤다니."),
    "verdict1": _p("한 번쯤 볼만해요.|나쁘지 않았어요.|심심할 때 보기 좋아요.|7점 정도.|"
                   "그럭저럭 만족합니다.|가볍게 보기 괜찮아요."),
    "verdict-1": _p("기대보다는 별로.|다시 보진 않을 듯.|좀 아쉽네요.|4점 정도.|추천하긴 애매해요.|"
                    "기대를 너무 했나 봐요."),
    "meh": _p("그냥 그랬어요.|호불호 갈릴 듯.|딱 중간.|애매하네요.|무난무난.|평작입니다."),
    "fillers": _p("주말에 가족이랑 봤어요.|친구 추천으로 봤습니다.|러닝타임은 두 시간 정도.|"
                  "극장은 반쯤 비어 있었다.|원작 소설이 있다고 한다.|비행기에서 봤어요.|"
                  "아무 정보 없이 봤다."),
    "intros": _p("{t} 보고 왔어요.|{g} 영화 {t} 후기.|{y}년작 {g} {t}.|드디어 {t} 봤다.|{t} 관람 후기."),
    "titles": _p("푸른 밤|마지막 여름|그림자 도시|유리 정원|북쪽의 빛|철의 바다|종이 달|조용한 궤도|"
                 "긴 귀갓길|메아리의 도시"),
    "genres": _p("스릴러|로맨틱 코미디|드라마|공포|SF|액션|애니메이션|미스터리|전쟁|뮤지컬"),
    "simple": _p("{A}.|솔직히 {A}.|개인적으로 {A}.|제가 보기엔 {A}."),
    # {a}: clause in connective form (stem only), {B}: finished clause
    "contrast": _p("{a}지만 {B}.|{a}는데 {B}.|{A}. 하지만 {B}.|{A}. 그런데 {B}.|{A}. 그래도 {B}."),
    "both": _p("{a}고 {B}.|{A}. 그리고 {B}.|{A}. {B}."),
}
_LANGS = {"en": _EN, "ko": _KO}


def _has_batchim(word: str) -> bool:
    ch = word[-1]
    return "\uac00" <= ch <= "\ud7a3" and (ord(ch) - 0xAC00) % 28 != 0


class _Writer:
    """Writes the pieces of one review in one language and register."""

    def __init__(self, rng: random.Random, lang: str):
        self.rng, self.lang, self.d = rng, lang, _LANGS[lang]
        self.polite = rng.random() < 0.5  # Korean: "-어요" vs plain "-다"
        self.used: set[str] = set()  # aspects already talked about

    def pick(self, key) -> str:
        return self.rng.choice(self.d[key])

    def predicate(self, level: int) -> str:
        pred = self.pick(level)
        mod_key = "intens" if abs(level) == 2 else ("hedge+" if level > 0 else "hedge-")
        return pred.replace("~", self.pick(mod_key))

    def clause(self, level: int) -> tuple[str, str]:
        """(connective form, finished form) of '<aspect> was <predicate>'."""
        aspect = self.rng.choice([a for a in self.d["aspects"] if a not in self.used])
        self.used.add(aspect)
        pred = self.predicate(level)
        if self.lang == "en":
            text = f"the {aspect} {'were' if aspect.endswith('s') else 'was'} {pred}"
            return text, text
        if self.rng.random() < 0.7:
            particle = "은" if _has_batchim(aspect) else "는"
        else:
            particle = "이" if _has_batchim(aspect) else "가"
        stem = f"{aspect}{particle} {pred}"
        return stem, stem + ("어요" if self.polite else "다")

    def sentence(self, key: str, first: int, second: int | None = None) -> str:
        a, a_done = self.clause(first)
        b = self.clause(second)[1] if second is not None else ""
        out = self.pick(key).format(a=a, A=a_done, B=b)
        return out[0].upper() + out[1:]

    def extra(self, key: str) -> str:
        t, g, y = self.pick("titles"), self.pick("genres"), self.rng.randint(1985, 2024)
        return self.pick(key).format(t=t, g=g, y=y)


def _review(rng: random.Random, cls: int, lang: str) -> str:
    w, r = _Writer(rng, lang), rng.random()
    lv = _LEVELS[cls]
    sign = 1 if lv > 0 else -1
    parts = []
    if abs(lv) == 2:
        # strong: mostly strong wording, sometimes only mild wording
        main = sign * (1 if rng.random() < 0.3 else 2)
        if r < 0.35:
            parts.append(w.sentence("simple", main))
        elif r < 0.6:
            parts.append(w.sentence("both", sign * rng.choice((1, 2)), main))
        else:  # concede a mild (rarely strong) flaw, end on the main clause
            parts.append(w.sentence("contrast", -sign * (2 if rng.random() < 0.15 else 1), main))
        if rng.random() < 0.5:
            parts.append(w.pick(f"verdict{sign * 2}" if rng.random() < 0.75 else f"verdict{sign}"))
    else:
        # weak: mild and mixed; the later clause dominates; rarely strong words
        other = -sign * (2 if rng.random() < 0.25 else 1)
        main = sign * (2 if rng.random() < 0.12 else 1)
        if r < 0.5:
            parts.append(w.sentence("contrast", other, main))
        elif r < 0.7:
            parts.append(w.sentence("simple", other))
            parts.append(w.sentence("simple", main))
        else:
            parts.append(w.sentence("simple", main))
        if rng.random() < 0.5:
            q = rng.random()
            parts.append(w.pick("meh" if q < 0.4 else f"verdict{sign}" if q < 0.8 else f"verdict{-sign}"))
    # neutral context: sometimes, and always when the review would be too short
    size = sum(len(p.split()) for p in parts)
    for key, prob in (("fillers", 0.3), ("intros", 0.3)):
        text = w.extra(key)
        if (rng.random() < prob or size < 6) and size + len(text.split()) <= 30:
            parts.insert(0 if key == "intros" else rng.randint(0, len(parts)), text)
            size += len(text.split())
    return " ".join(parts)


def _counts(n: int, shares: tuple[float, ...]) -> list[int]:
    total = sum(shares)
    raw = [n * s / total for s in shares]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def generate(n: int, *, seed: int = 0, language: str = "en", noise: float = 0.08,
             class_shares: tuple[float, float, float, float] = (0.30, 0.12, 0.25, 0.33)
             ) -> tuple[list[str], list[int]]:
    """n reviews and their labels; deterministic for a given (n, seed, language, noise, class_shares)."""
    if language not in _LANGS:
        raise ValueError(f"unsupported language {language!r}; supported: {', '.join(sorted(_LANGS))}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    if len(class_shares) != 4 or min(class_shares) < 0 or sum(class_shares) <= 0:
        raise ValueError(f"class_shares must be 4 non-negative numbers with a positive sum, got {class_shares}")
    rng = random.Random(seed)
    labels = [c for c, k in enumerate(_counts(n, tuple(class_shares))) for _ in range(k)]
    rng.shuffle(labels)
    texts = []
    for label in labels:
        cls = label
        if rng.random() < noise:  # annotator error: text belongs to an adjacent class
            cls = 1 if label == 0 else 2 if label == 3 else label + rng.choice((-1, 1))
        texts.append(_review(rng, cls, language))
    return texts, labels
