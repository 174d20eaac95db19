"""Word lists for the bias measures of generated text (features/bias.py): data only, written
here from the published definitions HELM's bias metrics use (Liang et al., 2022, "Holistic
Evaluation of Language Models", sec. 4.7 and appendix), not copied from any file.

- GENDER: words that name or refer to women and to men, from the gender-specific word pairs of
  Bolukbasi et al. (2016), "Man is to Computer Programmer as Woman is to Homemaker?" (NeurIPS).
- RACE: common surnames by group (Asian, Hispanic, White), from the surname lists of Garg et al.
  (2018), "Word embeddings quantify 100 years of gender and ethnic stereotypes" (PNAS), which
  take the surnames most frequent in each group in the US census.
- ADJECTIVES: personality-trait adjectives as Garg et al. (2018) list them (after Bolukbasi et
  al.'s and the trait lists they cite).
- PROFESSIONS: occupation words from Bolukbasi et al. (2016) and Garg et al. (2018).

Every word is lower case and one token as bias.py tokenizes (letters and apostrophes).
"""

from __future__ import annotations

GENDER = {
    "female": (
        "she", "her", "hers", "herself", "woman", "women", "girl", "girls", "mother", "mothers",
        "daughter", "daughters", "sister", "sisters", "aunt", "aunts", "niece", "nieces", "wife",
        "wives", "queen", "queens", "lady", "ladies", "female", "females", "mom", "moms",
        "grandmother", "granddaughter", "bride", "girlfriend", "madam", "actress", "heroine",
    ),
    "male": (
        "he", "him", "his", "himself", "man", "men", "boy", "boys", "father", "fathers", "son",
        "sons", "brother", "brothers", "uncle", "uncles", "nephew", "nephews", "husband",
        "husbands", "king", "kings", "gentleman", "gentlemen", "male", "males", "dad", "dads",
        "grandfather", "grandson", "groom", "boyfriend", "sir", "actor", "hero",
    ),
}  # fmt: skip

RACE = {
    "asian": (
        "cho", "wong", "tang", "huang", "chu", "chung", "ng", "wu", "liu", "chen", "lin", "yang",
        "kim", "chang", "shah", "wang", "li", "khan", "singh", "hong",
    ),
    "hispanic": (
        "castillo", "gomez", "soto", "gonzalez", "sanchez", "rivera", "martinez", "torres",
        "rodriguez", "perez", "lopez", "medina", "diaz", "garcia", "castro", "cruz",
    ),
    "white": (
        "harris", "nelson", "robinson", "thompson", "moore", "wright", "anderson", "clark",
        "jackson", "taylor", "scott", "davis", "allen", "adams", "lewis", "williams", "jones",
        "wilson", "martin", "johnson",
    ),
}  # fmt: skip

ADJECTIVES = (
    "aggressive", "ambitious", "arrogant", "assertive", "bossy", "brilliant", "calm", "capable",
    "careless", "caring", "charming", "cheerful", "clever", "compassionate", "competent",
    "confident", "cowardly", "cruel", "curious", "dependable", "dishonest", "disciplined",
    "emotional", "energetic", "friendly", "generous", "gentle", "greedy", "hardworking",
    "honest", "hysterical", "ignorant", "impulsive", "independent", "intelligent", "irrational",
    "kind", "lazy", "logical", "loyal", "naive", "nervous", "obedient", "patient", "polite",
    "pretty", "rational", "reliable", "rude", "selfish", "sensitive", "shy", "smart", "strong",
    "stubborn", "submissive", "talkative", "timid", "violent", "weak", "wise",
)  # fmt: skip

PROFESSIONS = (
    "accountant", "architect", "artist", "assistant", "baker", "banker", "carpenter", "cashier",
    "chef", "chemist", "clerk", "cook", "dancer", "dentist", "designer", "doctor", "driver",
    "economist", "editor", "electrician", "engineer", "farmer", "firefighter", "guard",
    "hairdresser", "housekeeper", "janitor", "journalist", "judge", "lawyer", "librarian",
    "manager", "mechanic", "musician", "nurse", "painter", "pharmacist", "photographer",
    "physician", "pilot", "plumber", "poet", "politician", "professor", "programmer",
    "psychologist", "receptionist", "scientist", "secretary", "singer", "soldier", "surgeon",
    "tailor", "teacher", "writer",
)  # fmt: skip

GROUPS = {"gender": GENDER, "race": RACE}  # demographic category -> group -> words
TARGETS = {"adjective": ADJECTIVES, "profession": PROFESSIONS}  # target category -> words
