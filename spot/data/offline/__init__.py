"""The embedded offline suite, its pretraining corpus, vocabulary and tiny backbone: real
English from PyPI packages, so SPoT runs end to end with no dataset or model hub."""
