"""``chat_template`` of a merge config: a built-in name, ``auto``, or a Jinja template.

As mergekit 0.1.5 reads it (``merge.py``, ``_set_chat_template``):

- ``auto``: the most common chat template among the referenced models'
  tokenizers (stripped; a tie goes to the model named first in the config,
  where mergekit's order is that of a Python set); none found: the output
  keeps the tokenizer's own;
- a built-in name (``alpaca``, ``chatml``, ``exaone``, ``llama3``,
  ``mistral``): that template's text, below. These strings are data (each
  model family's published chat format), as mergekit 0.1.5 ships them in
  ``_data/chat_templates/*.jinja`` (LGPL-3.0), so that a merge's tokenizer
  equals mergekit's byte for byte;
- anything else is taken as a template, and refused when it is shorter than
  20 characters or holds no ``{``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from luminary.core.errors import LuminaryError

BUILT_IN: dict[str, str] = {
    'alpaca': (
        "{{ (messages|selectattr('role', 'equalto', 'system')|list|last).content|trim if (messages|selectattr('role', 'equalto', 'system')|list) else '' }}\n"
        '\n'
        '{% for message in messages %}\n'
        "{% if message['role'] == 'user' %}\n"
        '### Instruction:\n'
        "{{ message['content']|trim -}}\n"
        '{% if not loop.last %}\n'
        '\n'
        '\n'
        '{% endif %}\n'
        "{% elif message['role'] == 'assistant' %}\n"
        '### Response:\n'
        "{{ message['content']|trim -}}\n"
        '{% if not loop.last %}\n'
        '\n'
        '\n'
        '{% endif %}\n'
        "{% elif message['role'] == 'user_context' %}\n"
        '### Input:\n'
        "{{ message['content']|trim -}}\n"
        '{% if not loop.last %}\n'
        '\n'
        '\n'
        '{% endif %}\n'
        '{% endif %}\n'
        '{% endfor %}\n'
        "{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}\n"
        '### Response:\n'
        '{% endif %}\n'
    ),
    'chatml': (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}\n"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}\n"
    ),
    'exaone': (
        '{% for message in messages %}\n'
        "    {% if loop.first and message['role'] != 'system' %}\n"
        "        {{ '[|system|][|endofturn|]\\n' }}\n"
        '    {% endif %}\n'
        "    {{ '[|' + message['role'] + '|]' + message['content'] }}\n"
        "    {% if message['role'] == 'user' %}\n"
        "        {{ '\\n' }}\n"
        '    {% else %}\n'
        "        {{ '[|endofturn|]\\n' }}\n"
        '    {% endif %}\n'
        '{% endfor %}\n'
        '{% if add_generation_prompt %}\n'
        "    {{ '[|assistant|]' }}\n"
        '{% endif %}\n'
    ),
    'llama3': (
        '{% set loop_messages = messages %}\n'
        '{% for message in loop_messages %}\n'
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}\n"
        '{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}\n'
        '{{ content }}\n'
        '{% endfor %}\n'
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}\n"
    ),
    'mistral': (
        "{%- if messages[0]['role'] == 'system' %}\n"
        "    {%- set system_message = messages[0]['content'] %}\n"
        '    {%- set loop_messages = messages[1:] %}\n'
        '{%- else %}\n'
        '    {%- set loop_messages = messages %}\n'
        '{%- endif %}\n'
        '\n'
        '{{- bos_token }}\n'
        '{%- for message in loop_messages %}\n'
        "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
        "        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n"
        '    {%- endif %}\n'
        "    {%- if message['role'] == 'user' %}\n"
        '        {%- if loop.first and system_message is defined %}\n'
        "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
        '        {%- else %}\n'
        "            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
        '        {%- endif %}\n'
        "    {%- elif message['role'] == 'assistant' %}\n"
        "        {{- ' ' + message['content'] + eos_token}}\n"
        '    {%- else %}\n'
        "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n"
        '    {%- endif %}\n'
        '{%- endfor %}\n'
    ),
}


def read_chat_template(folder: Path) -> str | None:
    """A model folder's chat template (``chat_template.jinja``, else ``tokenizer_config.json``), or None."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    template = json.loads(config.read_text()).get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        template = {t.get("name"): t.get("template") for t in template}
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


def resolve_chat_template(value: str | None, models: list[Path]) -> str | None:
    """The template text to write for the config's ``chat_template`` (None: leave the tokenizer's)."""
    if not value:
        return None
    if value == "auto":
        found = [t.strip() for t in (read_chat_template(m) for m in models) if t and t.strip()]
        return Counter(found).most_common(1)[0][0] if found else None
    if value in BUILT_IN:
        return BUILT_IN[value]
    if len(value) < 20 or "{" not in value:
        raise LuminaryError(f"chat_template: '{value}' is neither a template nor a built-in name "
                            f"(known: auto, {', '.join(sorted(BUILT_IN))})")
    return value
