"""MMLU (Hendrycks et al., 2021): four-answer exam questions in 57 subjects, from elementary
mathematics to professional law. Each subject is a task (`mmlu_<subject>`), 5-shot by default
with the subject's first five dev questions as examples, scored by acc: the model picks the
letter (A-D) it finds most likely after the question and its lettered answers. Four groups
(stem, humanities, social sciences, other) and `mmlu` average acc weighted by subject size.
"""

import pytest_lmeval as lm

SUBJECTS = {
    "stem": [
        "abstract_algebra",
        "anatomy",
        "astronomy",
        "college_biology",
        "college_chemistry",
        "college_computer_science",
        "college_mathematics",
        "college_physics",
        "computer_security",
        "conceptual_physics",
        "electrical_engineering",
        "elementary_mathematics",
        "high_school_biology",
        "high_school_chemistry",
        "high_school_computer_science",
        "high_school_mathematics",
        "high_school_physics",
        "high_school_statistics",
        "machine_learning",
    ],
    "other": [
        "business_ethics",
        "clinical_knowledge",
        "college_medicine",
        "global_facts",
        "human_aging",
        "management",
        "marketing",
        "medical_genetics",
        "miscellaneous",
        "nutrition",
        "professional_accounting",
        "professional_medicine",
        "virology",
    ],
    "social_sciences": [
        "econometrics",
        "high_school_geography",
        "high_school_government_and_politics",
        "high_school_macroeconomics",
        "high_school_microeconomics",
        "high_school_psychology",
        "human_sexuality",
        "professional_psychology",
        "public_relations",
        "security_studies",
        "sociology",
        "us_foreign_policy",
    ],
    "humanities": [
        "formal_logic",
        "high_school_european_history",
        "high_school_us_history",
        "high_school_world_history",
        "international_law",
        "jurisprudence",
        "logical_fallacies",
        "moral_disputes",
        "moral_scenarios",
        "philosophy",
        "prehistory",
        "professional_law",
        "world_religions",
    ],
}


def _question(doc: dict) -> str:
    options = "".join(f"\n{letter}. {text}" for letter, text in zip("ABCD", doc["choices"], strict=True))
    return f"{doc['question'].strip()}{options}\nAnswer:"


def _description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def _subject(subject: str, category: str) -> lm.Task:
    return lm.multiple_choice(
        f"mmlu_{subject}",
        alias=subject,
        data=lm.hub("cais/mmlu", subject, split="test"),
        fewshot=lm.fewshot(split="dev", sampler="first_n", description=_description(subject)),
        prompt=_question,
        choices=["A", "B", "C", "D"],
        target="answer",
        metrics=["acc"],
        tags=[f"mmlu_{category}_tasks"],
    )


subjects = {category: [_subject(s, category) for s in names] for category, names in SUBJECTS.items()}
categories = [
    lm.group(f"mmlu_{category}", tasks, alias=category.replace("_", " "), version=2)
    for category, tasks in subjects.items()
]
mmlu = lm.group("mmlu", categories, version=2)


@lm.benchmark(mmlu)
def test_mmlu(doc):
    doc.score()
