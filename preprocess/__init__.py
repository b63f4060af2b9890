"""The preprocessing stage (``uer.preprocess``): corpus -> instances -> Arrow dataset on disk.

``corpus`` validates and shards text corpora; one file per processor (``sentence_pair``: bert/albert,
``full_sentences``: mlm, ``causal_lm``: lm, ``images``: image) turns a shard into rows; ``registry``
maps names to processors and a ``data`` config to options; ``shards`` runs them in worker processes;
``build`` writes the cached, self-contained dataset directory and loads it back.
"""
