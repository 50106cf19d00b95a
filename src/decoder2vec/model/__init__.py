"""How a decoder becomes a bidirectional model and runs: tensors in, tensors out, and model loading.

    loading.py            hub id | local folder | .gguf -> (model, tokenizer); the cache folder
    int8_loading.py       int8 weights quantised while loading (never the whole fp32 model)
    quantization.py       int8 weights: every Linear runs as an int8 x int8 -> int32 matmul
    bidirectional.py      causal <-> bidirectional attention
    chunked_attention.py  attention in chunks above the batch x length limit
    unpadded.py           packed (varlen) batches with no padding
    pooling.py            hidden states -> one vector (mean, weighted mean, last or first token, latent attention)
    precision.py          output precisions of vectors (int8, binary, ...; sentence-transformers conventions)
    chat_format.py        LLM2Vec's chat formats
    words.py              token vectors -> word vectors

Nothing here reads an Encoder folder (folder/) or knows the Encoder.
"""
