"""The substitution tables the perturbations draw on: keyboard neighbours for typos, contracted
and expanded phrases, common misspellings and gendered pronouns.

They are plain data kept apart from the code that applies them, so a list can be extended or
reviewed without reading the edits, and the edits without scrolling past the lists. The lists
are this project's own, in the spirit of HELM's, not copies of them.
"""

from __future__ import annotations

# -- keyboard neighbours (typos) ----------------------------------------------------------------
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_STAGGER = (0.0, 0.25, 0.75)  # how far each row sits to the right of the one above


def _neighbours() -> dict[str, str]:
    """Derived from key positions rather than typed out, so the table cannot miss a neighbour
    or list one key twice."""
    where = {c: (r, i + _STAGGER[r]) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
    out = {}
    for c, (r, x) in where.items():
        near = [d for d, (r2, x2) in where.items() if d != c and abs(r2 - r) <= 1 and abs(x2 - x) <= 1.0]
        out[c] = "".join(sorted(near))
    return out


NEIGHBOURS = _neighbours()

# -- contractions and expansions --------------------------------------------------------------
CONTRACTIONS = {
    "are not": "aren't", "cannot": "can't", "could not": "couldn't", "did not": "didn't",
    "does not": "doesn't", "do not": "don't", "had not": "hadn't", "has not": "hasn't",
    "have not": "haven't", "he is": "he's", "how is": "how's", "i am": "i'm", "i have": "i've",
    "i will": "i'll", "is not": "isn't", "it is": "it's", "let us": "let's", "might not": "mightn't",
    "must not": "mustn't", "she is": "she's", "should not": "shouldn't", "that is": "that's",
    "there is": "there's", "they are": "they're", "they have": "they've", "they will": "they'll",
    "was not": "wasn't", "we are": "we're", "we have": "we've", "we will": "we'll", "were not": "weren't",
    "what is": "what's", "where is": "where's", "who is": "who's", "will not": "won't",
    "would not": "wouldn't", "you are": "you're", "you have": "you've", "you will": "you'll",
}  # fmt: skip
EXPANSIONS = {short: long for long, short in CONTRACTIONS.items()}

# -- common misspellings ----------------------------------------------------------------------
MISSPELLINGS = {
    "accommodate": "accomodate", "achieve": "acheive", "acquire": "aquire", "address": "adress",
    "apparent": "apparant", "argument": "arguement", "basically": "basicly", "beautiful": "beatiful",
    "because": "becuase", "beginning": "begining", "believe": "beleive", "business": "buisness",
    "calendar": "calender", "category": "catagory", "committee": "commitee", "completely": "completly",
    "conscious": "concious", "definitely": "definately", "describe": "discribe", "different": "diffrent",
    "disappear": "dissapear", "during": "durring", "embarrass": "embarass", "environment": "enviroment",
    "especially": "especally", "exercise": "excercise", "existence": "existance", "experiment": "experement",
    "familiar": "familar", "finally": "finaly", "foreign": "foriegn", "forty": "fourty", "friend": "freind",
    "government": "goverment", "grammar": "grammer", "guarantee": "guarentee", "happened": "happend",
    "height": "heigth", "immediately": "immediatly", "independent": "independant", "interesting": "intresting",
    "interrupt": "interupt", "knowledge": "knowlege", "length": "lenght", "library": "libary",
    "lightning": "lightening", "maintenance": "maintainance", "medicine": "medecine", "millennium": "millenium",
    "necessary": "neccessary", "neighbor": "nieghbor", "noticeable": "noticable", "occasion": "occassion",
    "occurred": "occured", "occurrence": "occurence", "original": "orignal", "particular": "perticular",
    "people": "poeple", "piece": "peice", "possession": "posession", "privilege": "priviledge",
    "probably": "probaly", "pronunciation": "pronounciation", "publicly": "publically", "really": "realy",
    "receive": "recieve", "recommend": "recomend", "reference": "refrence", "relevant": "relevent",
    "remember": "rember", "restaurant": "restaraunt", "rhythm": "rythm", "schedule": "schedual",
    "sentence": "sentance", "separate": "seperate", "similar": "similiar", "sincerely": "sincerly",
    "strength": "strenght", "successful": "succesful", "surprise": "suprise", "temperature": "temprature",
    "therefore": "therefor", "threshold": "threshhold", "tomorrow": "tommorow", "tongue": "tounge",
    "truly": "truely", "twelfth": "twelth", "unfortunately": "unfortunatly", "until": "untill",
    "usually": "usualy", "vacuum": "vaccum", "visible": "visable", "weird": "wierd", "whether": "wether",
    "which": "wich", "writing": "writting",
}  # fmt: skip

# -- gender pronouns (male to female) ---------------------------------------------------------
PRONOUNS = {"he": "she", "him": "her", "his": "her", "himself": "herself"}
