"""Packaging for fairseq-specdec, a fairseq plugin for speculative decoding (SpecDec)."""
from setuptools import find_packages, setup

# fairseq 0.12.2 fails at import on Python >= 3.11 (a mutable dataclass default);
# fairseq-fixed 0.12.3.1 is fairseq's main branch with that fixed and keeps the import
# name `fairseq`. torch is left unpinned: install the build that fits the machine first
# (README), and pip keeps it.
INSTALL_REQUIRES = [
    "torch>=1.13",
    "fairseq==0.12.2; python_version < '3.11'",
    "fairseq-fixed==0.12.3.1; python_version >= '3.11'",
    "sacremoses>=0.0.53",
    "subword-nmt>=0.3.8",
    "sacrebleu>=2.0",
]

BENCH_REQUIRE = ["matplotlib>=3.5", "ctranslate2>=4.0"]  # plots; the CTranslate2 peer
EXTRAS_REQUIRE = {
    "bench": BENCH_REQUIRE,
    "test": ["pytest>=7", *BENCH_REQUIRE],
}

setup(
    name="fairseq-specdec",
    version="0.1.0",
    description="SpecDec (Xia et al., 2023): a Spec-Drafter and Spec-Verification for fairseq",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    packages=find_packages(include=["fairseq_specdec", "fairseq_specdec.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "specdec-benchmark=fairseq_specdec.benchmark:cli_main",
        ]
    },
)
