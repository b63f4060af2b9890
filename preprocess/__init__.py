"""The preprocessing stage (``uer.preprocess``): corpus -> instances -> Arrow dataset on disk.

``corpus`` validates and shards text corpora; one file per processor (``sentence_pair``: bert/albert,
``full_sentences``: mlm, ``causal_lm``: lm, ``images``: image) turns a shard into rows; ``registry``
builds the processor a ``data`` config names by ``_target_``; ``shards`` runs them in worker processes;
``build`` writes the cached, self-contained dataset directory and loads it back.
"""
