"""Tags: known captions -> known relational tags, through spaCy and through hand-written UD (CoNLL-U) parses."""

from collections import Counter

import pytest

from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages.tags import StanzaParser, Token, extract_tags, make_parser, tags_of_captions

# ---------------------------------------------------------------- spaCy (the offline default)


@pytest.mark.parametrize("caption,expected", [
    ("A dog chases a ball .", {"dog chase ball"}),  # subject-verb-object
    ("A man sits on a bench .", {"man sit on bench"}),  # subject-verb-prep-object
    ("A black dog sleeps .", {"black dog"}),  # modifier-noun
    ("A man in a red shirt .", {"man in shirt", "red shirt"}),  # noun-prep-noun + modifier
])
def test_spacy_known_captions(spacy_parser, caption, expected):
    assert set(tags_of_captions([caption], spacy_parser)) == expected


def test_spacy_tags_are_lemmatised_lower_case(spacy_parser):
    tags = tags_of_captions(["The dogs are chasing the balls .", "Two dogs play with balls near New York ."], spacy_parser)
    assert "dog chase ball" in tags
    assert "dog play with ball" in tags
    for tag in tags:
        assert tag == tag.lower() and "  " not in tag and tag == tag.strip()


def test_spacy_lemma_fixes(spacy_parser):
    # "riding"/"sits" are in LEMMA_FIXES because the small model lemmatises them wrongly.
    tags = tags_of_captions(["A boy is riding a bike .", "A girl sits on a chair ."], spacy_parser)
    assert "boy ride bike" in tags
    assert "girl sit on chair" in tags


def test_counts_are_per_caption(spacy_parser):
    """A tag counts once per caption that says it, however often that caption repeats it."""
    counts = tags_of_captions(["A black dog and a black dog .", "The black dog runs .", "A brown dog sleeps ."],
                              spacy_parser)
    assert isinstance(counts, Counter)
    assert counts["black dog"] == 2
    assert counts["brown dog"] == 1


def test_spacy_parse_one_unit_per_caption(spacy_parser):
    parsed = spacy_parser.parse(["A dog runs . A cat sleeps .", "A bird ."])
    assert len(parsed) == 2
    ids = [t.id for t in parsed[0]]
    assert ids == list(range(1, len(ids) + 1))
    assert all(0 <= t.head <= len(ids) for t in parsed[0])


def test_empty_captions(spacy_parser):
    assert tags_of_captions([], spacy_parser) == Counter()
    assert tags_of_captions(["."], spacy_parser) == Counter()


def test_make_parser_unknown_backend():
    with pytest.raises(SlimeError, match="unknown tag backend 'nltk'"):
        make_parser("nltk")


def test_missing_spacy_model_is_a_clear_error():
    with pytest.raises(MissingModelError, match="not installed"):
        make_parser("spacy", model="en_core_web_definitely_absent")


# ---------------------------------------------------------------- UD parses (the Stanza path)

MAN_SITS = """# text = A man sits on a bench .
1	A	a	DET	DT	_	2	det	_	_
2	man	man	NOUN	NN	_	3	nsubj	_	_
3	sits	sit	VERB	VBZ	_	0	root	_	_
4	on	on	ADP	IN	_	6	case	_	_
5	a	a	DET	DT	_	6	det	_	_
6	bench	bench	NOUN	NN	_	3	obl	_	_
7	.	.	PUNCT	.	_	3	punct	_	_

"""

DOG_AND_CAT = """# text = A black dog and a cat chase a ball .
1	A	a	DET	DT	_	3	det	_	_
2	black	black	ADJ	JJ	_	3	amod	_	_
3	dog	dog	NOUN	NN	_	7	nsubj	_	_
4	and	and	CCONJ	CC	_	6	cc	_	_
5	a	a	DET	DT	_	6	det	_	_
6	cat	cat	NOUN	NN	_	3	conj	_	_
7	chase	chase	VERB	VBP	_	0	root	_	_
8	a	a	DET	DT	_	9	det	_	_
9	ball	ball	NOUN	NN	_	7	obj	_	_
10	.	.	PUNCT	.	_	7	punct	_	_

"""

GIRL_CLIMBING = """# text = A girl climbing the stairs in a pink dress
1	A	a	DET	DT	_	2	det	_	_
2	girl	girl	NOUN	NN	_	0	root	_	_
3	climbing	climb	VERB	VBG	_	2	acl	_	_
4	the	the	DET	DT	_	5	det	_	_
5	stairs	stair	NOUN	NNS	_	3	obj	_	_
6	in	in	ADP	IN	_	9	case	_	_
7	a	a	DET	DT	_	9	det	_	_
8	pink	pink	ADJ	JJ	_	9	amod	_	_
9	dress	dress	NOUN	NN	_	2	nmod	_	_

"""

DOG_RUNS_AND_JUMPS = """# text = A dog runs and jumps over a log .
1	A	a	DET	DT	_	2	det	_	_
2	dog	dog	NOUN	NN	_	3	nsubj	_	_
3	runs	run	VERB	VBZ	_	0	root	_	_
4	and	and	CCONJ	CC	_	5	cc	_	_
5	jumps	jump	VERB	VBZ	_	3	conj	_	_
6	over	over	ADP	IN	_	8	case	_	_
7	a	a	DET	DT	_	8	det	_	_
8	log	log	NOUN	NN	_	5	obl	_	_
9	.	.	PUNCT	.	_	3	punct	_	_

"""


@pytest.fixture(scope="module")
def stanza_parser():
    return StanzaParser()


def test_parse_conllu_tokens(stanza_parser):
    [sentence] = stanza_parser.parse_conllu(MAN_SITS)
    assert [t.text for t in sentence] == ["A", "man", "sits", "on", "a", "bench", "."]
    assert sentence[2] == Token(3, "sits", "sit", "VERB", 0, "root")
    assert sentence[5].head == 3 and sentence[5].deprel == "obl"


@pytest.mark.parametrize("conllu,expected", [
    (MAN_SITS, ["man sit on bench"]),
    (DOG_AND_CAT, ["black dog", "dog chase ball", "cat chase ball"]),  # conjoined subjects share the verb
    (GIRL_CLIMBING, ["girl in dress", "girl climb stair", "pink dress"]),  # acl: the modified noun is the subject
    (DOG_RUNS_AND_JUMPS, ["dog jump over log"]),  # conjoined verb inherits the subject
])
def test_ud_known_tags(stanza_parser, conllu, expected):
    [sentence] = stanza_parser.parse_conllu(conllu)
    assert sorted(extract_tags(sentence)) == sorted(expected)


def test_parse_conllu_several_sentences(stanza_parser):
    sentences = stanza_parser.parse_conllu(MAN_SITS + DOG_AND_CAT)
    assert len(sentences) == 2
    assert [t.id for t in sentences[1]][:3] == [1, 2, 3]
    assert extract_tags(sentences[0]) == ["man sit on bench"]
    assert "dog chase ball" in extract_tags(sentences[1])


def test_stanza_counts_through_parser_interface(stanza_parser):
    """tags_of_captions works with any object that has parse(); here a stand-in returning ready UD parses."""
    parses = {"a": stanza_parser.parse_conllu(MAN_SITS)[0], "b": stanza_parser.parse_conllu(DOG_AND_CAT)[0]}

    class Ready:
        def parse(self, texts):
            return [parses[t] for t in texts]

    counts = tags_of_captions(["a", "b", "a"], Ready())
    assert counts == Counter({"man sit on bench": 2, "black dog": 1, "dog chase ball": 1, "cat chase ball": 1})


def test_stanza_without_pipeline_is_a_clear_error(stanza_parser):
    with pytest.raises(MissingModelError, match="parse_conllu"):
        stanza_parser.parse(["A dog ."])


def test_stanza_missing_models_is_a_clear_error(tmp_path):
    with pytest.raises(MissingModelError, match="Stanza English models not found"):
        StanzaParser(model_dir=str(tmp_path))


# ---------------------------------------------------------------- the extractor on hand-built tokens


def test_spacy_style_prep_pobj():
    """spaCy attaches prepositions as prep -> pobj; the extractor reads that style too."""
    toks = [Token(1, "Man", "man", "NOUN", 2, "nsubj"), Token(2, "sits", "sit", "VERB", 0, "ROOT"),
            Token(3, "on", "on", "ADP", 2, "prep"), Token(4, "bench", "bench", "NOUN", 3, "pobj")]
    assert extract_tags(toks) == ["man sit on bench"]


def test_verb_without_subject_gives_no_verb_tag():
    toks = [Token(1, "Running", "run", "VERB", 0, "root"), Token(2, "on", "on", "ADP", 3, "case"),
            Token(3, "grass", "grass", "NOUN", 1, "obl")]
    assert extract_tags(toks) == []


def test_punctuation_stripped_from_lemmas():
    toks = [Token(1, "dog's", "dog's", "NOUN", 2, "compound"), Token(2, "toy", "toy", "NOUN", 0, "root"),
            Token(3, "big!", "big!", "ADJ", 2, "amod")]
    assert sorted(extract_tags(toks)) == ["big toy", "dog's toy"]
