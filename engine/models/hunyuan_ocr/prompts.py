"""dsocr's prompt types -> HunyuanOCR's official task prompts (``inference/utils/tasks.py`` of
Tencent-Hunyuan/HunyuanOCR; its README lists the same), sent as they are, in Chinese.

``document`` is ``doc_parse`` (Markdown, tables as HTML, formulas as LaTeX, headers and footers
left out), ``ocr`` is ``spotting_hunyuan`` (lines with their coordinates), ``free`` is
``structured_parse`` (the text), ``table``/``formula``/``chart`` are ``table``/``formula``/
``chart_parse``; ``freeform`` sends the client's instruction (translation, extraction, questions).
"""

from __future__ import annotations

from ..task_prompts import TaskPrompts

PROMPTS = TaskPrompts(
    "hunyuan-ocr",
    {
        "document": (
            "提取文档图片中正文的所有信息用markdown格式表示，其中页眉、页脚部分忽略，表格用html格式表达，"
            "文档中公式用latex格式表示，按照阅读顺序组织进行解析。"
        ),
        "ocr": "检测并识别图片中的文字，将文本坐标格式化输出。",
        "free": "提取图中的文字。",
        "table": "把图中的表格解析为HTML。",
        "formula": "识别图片中的公式，用LaTeX格式表示。",
        "chart": "解析图中的图表，对于流程图使用Mermaid格式表示，其他图表使用Markdown格式表示。",
        "freeform": None,
    },
)
