"""The README.md model card written by `decoder2vec export`: what the model is, how it was made
(stages from decoder2vec_config.json), how well it does (a results JSON), and how to use it. The
text is the template model_card_template.md beside this file; the code here fills its tables and examples."""

from __future__ import annotations

import json
from importlib import resources
from string import Template


# The card's text, with $-placeholders filled by `model_card` (package data: pyproject.toml).
TEMPLATE_FILE = "model_card_template.md"
TEMPLATE = Template((resources.files("decoder2vec") / "folder" / TEMPLATE_FILE).read_text(encoding="utf-8"))


def _front_matter(encoder) -> str:
    base = encoder.config.base_model
    lines = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity", "tags:"]
    lines += [f"- {tag}" for tag in ("decoder2vec", "llm2vec", "sentence-transformers", "feature-extraction",
                                     "sentence-similarity", "text-embeddings")]
    # Only a hub id is a meaningful base_model link; local paths and packaged names are not.
    if base and "/" in base and not base.startswith((".", "/", "~")) and not base.endswith(".gguf"):
        lines.append(f"base_model: {base}")
    lines.append("---")
    return "\n".join(lines)


def _scalar(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def _stages(stages: list) -> str:
    if not stages:
        return ("No training stages: the base model with bidirectional attention and "
                "pooling only (LLM2Vec's step 1).")
    rows = ["| # | stage | recipe | details |", "|---|---|---|---|"]
    for i, stage in enumerate(stages, 1):
        stage = stage if isinstance(stage, dict) else {"stage": str(stage)}
        details = ", ".join(f"{k}={_scalar(v)}" for k, v in stage.items() if k not in ("stage", "recipe")
                            and not isinstance(v, (dict, list)))
        rows.append(f"| {i} | {stage.get('stage', '?')} | {_scalar(stage.get('recipe', '')) or '-'} | "
                    f"{details or '-'} |")
    return "\n".join(rows)


def _score(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def _results(results: dict | None) -> str:
    if not results or not results.get("tasks"):
        return "No evaluation results were given to `decoder2vec export --results`."
    rows = ["| task | type | language | main score |", "|---|---|---|---|"]
    for name, task in sorted(results["tasks"].items()):
        task = task if isinstance(task, dict) else {"main_score": task}
        language = task.get("language", "")
        language = ", ".join(language) if isinstance(language, list) else language
        rows.append(f"| {name} | {task.get('type', '')} | {language} | {_score(task.get('main_score', ''))} |")
    averages = results.get("averages") or {}
    if averages:
        rows += ["", "| average | score |", "|---|---|"]
        rows += [f"| {name} | {_score(value)} |" for name, value in averages.items()]
    return "\n".join(rows)


def model_card(encoder, *, results: dict | None = None, instructions: dict[str, str] | None = None,
               model_name: str = "MODEL", gaps: list[str] | None = None, exact: bool = False) -> str:
    info = encoder.info()
    cfg = encoder.config
    instructions = instructions or {}
    first = next(iter(instructions), None)
    st_query = (f'model.encode(["capital of France"], prompt_name="{first}")' if first
                else 'model.encode(["capital of France"])')
    d2v_query = (f'encoder.encode(["capital of France"], instruction={instructions[first]!r})' if first
                 else 'encoder.encode(["capital of France"])')
    server_instruction = (
        "# decoder2vec extension: one instruction for every input of the request\n"
        f'queries = client.embeddings.create(model="{model_name}", input=["capital of France"],\n'
        f'                                   extra_body={{"instruction": {instructions[first]!r}}})\n'
        if first else ""
    )
    prompt_rows = "\n".join(f"| `{name}` | {text} |" for name, text in instructions.items()) or "| - | - |"
    st_load = (f'SentenceTransformer("{model_name}", trust_remote_code=True)  # needs `pip install decoder2vec`'
               if exact else f'SentenceTransformer("{model_name}")')
    exactness = (
        "This folder uses decoder2vec's own sentence-transformers module (`decoder2vec.st_module`), so "
        "sentence-transformers gives exactly `Encoder.encode`'s vectors; loading it runs that module's "
        "code, hence `trust_remote_code=True` and decoder2vec installed."
        if exact else
        "`SentenceTransformer(folder)` reproduces `Encoder.encode` for this model (same tokens, "
        "same attention, same pooled positions)."
        if not gaps else
        "`SentenceTransformer(folder)` differs slightly from `Encoder.encode` here:\n\n"
        + "\n".join(f"- {gap}" for gap in gaps)
        + "\n\nUse `decoder2vec` (or its server) for the exact vectors, or re-export with "
        "`decoder2vec export --exact`."
    )
    return TEMPLATE.substitute(
        front_matter=_front_matter(encoder), model_name=model_name, base_model=cfg.base_model or "unknown",
        family=info["family"], parameters=f"{info['parameters']:,}", dimension=cfg.dimension,
        attention="bidirectional" if cfg.bidirectional else "causal", pooling=cfg.pooling,
        max_length=cfg.max_length, instruction_template=repr(cfg.instruction_template),
        stages=_stages(cfg.stages), results=_results(results), prompt_rows=prompt_rows, d2v_query=d2v_query,
        st_load=st_load, st_query=st_query, exactness=exactness, server_instruction=server_instruction)
