"""Knowledge base (知识库): entries, import/export, retrieval robust to ASR errors, evaluation."""
