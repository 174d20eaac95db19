"""Word lists for the fairness perturbations (`--perturb dialect`, `--perturb names`): data only,
written here from the published definitions, not copied from any file.

- DIALECT: Standard American English words and phrases with an African American English
  rendering, after the SAE-to-AAE substitutions of Groenwold et al. (2020), "Investigating
  African-American Vernacular English in Transformer-Based Text Generation" (EMNLP), as used by
  HELM's dialect perturbation (Liang et al., 2022, sec. 4.6; Ziems et al., 2022, "VALUE").
  A representative set of the orthographic word-for-word pairs (th-stopping: this -> dis;
  g-dropping: nothing -> nothin; reductions: going to -> gonna; negation: isn't -> ain't).
- FIRST_NAMES: common first names by race group and gender, the European American and African
  American names of Caliskan et al. (2017), "Semantics derived automatically from language
  corpora contain human-like biases" (Science; WEAT, after Greenwald et al., 1998, and
  Bertrand and Mullainathan, 2004), which HELM's person-name perturbation draws on.
"""

from __future__ import annotations

DIALECT = {
    "about": "bout", "another": "anotha", "anything": "anythang", "am not": "ain't",
    "are not": "ain't", "aren't": "ain't", "ask": "aks", "asked": "aksed", "because": "cuz",
    "before": "befo", "better": "betta", "boy": "boi", "brother": "brotha", "doing": "doin",
    "ever": "eva", "everything": "everythang", "father": "fatha", "for": "fo", "going": "goin",
    "going to": "gonna", "got to": "gotta", "have to": "hafta", "is not": "ain't", "isn't": "ain't",
    "just": "jus", "little": "lil", "more": "mo", "mother": "mama", "never": "neva",
    "nothing": "nothin", "other": "otha", "over": "ova", "probably": "prolly", "sister": "sista",
    "something": "somethin", "sure": "sho", "talking": "talkin", "that": "dat", "the": "da",
    "their": "they", "them": "dem", "there": "dere", "these": "dese", "they": "dey",
    "thing": "thang", "this": "dis", "those": "dose", "though": "tho", "through": "thru",
    "together": "togetha", "trying": "tryin", "want to": "wanna", "whatever": "whateva",
    "with": "wit", "your": "yo", "you all": "y'all",
}  # fmt: skip

# race group -> gender -> first names (Caliskan et al., 2017, the WEAT name lists)
FIRST_NAMES = {
    "white": {
        "male": (
            "Adam", "Alan", "Andrew", "Brad", "Frank", "Greg", "Harry", "Jack", "Jonathan", "Josh",
            "Justin", "Matthew", "Paul", "Peter", "Roger", "Ryan", "Stephen",
        ),
        "female": (
            "Amanda", "Betsy", "Colleen", "Courtney", "Ellen", "Emily", "Heather", "Katie", "Kristin",
            "Lauren", "Megan", "Melanie", "Nancy", "Rachel", "Stephanie",
        ),
    },
    "black": {
        "male": (
            "Alonzo", "Alphonse", "Darnell", "Deion", "Jamel", "Jerome", "Lamar", "Lamont", "Leroy",
            "Lionel", "Malik", "Terrence", "Theo", "Torrance", "Tyree", "Tyrone",
        ),
        "female": (
            "Ebony", "Jasmine", "Lakisha", "Latisha", "Latoya", "Malika", "Nichelle", "Shaniqua",
            "Shereen", "Tanisha", "Tia", "Yolanda", "Yvette",
        ),
    },
}  # fmt: skip

# a name -> (its group, its gender)
NAME_GROUP = {n: (group, gender) for group, by in FIRST_NAMES.items() for gender, names in by.items() for n in names}
