"""The Encoder folder and the files decoder2vec writes into it or beside it.

    files.py                  every file of an Encoder folder and the module that owns it (OWNERS)
    config.py                 decoder2vec_config.json (EncoderConfig, read/write, stage records) and
                              "what is this model name or path?" (kind)
    precision_ranges.py       precision_ranges.json (the calibrated int8/uint8 ranges)
    latent_attention.py       latent_attention.safetensors (the trained latent-attention layer)
    distill_projection.py     distill_projection.safetensors (distill's projection, for inspection)
    sentence_transformers.py  the folder's sentence-transformers files (modules.json, ...)
    trained_dims.py           the Matryoshka dims a folder was trained for
    anchors.py                the anchor models and their short names
    model_card.py             README.md of an exported folder
    onnx_export.py            export to ONNX (uses the Encoder)
    export.py                 export as a sentence-transformers folder, push to the hub (uses the Encoder)

The modules sit in different layers (tests/test_layering.py): the exports import the Encoder, the
rest sit below it.
"""
