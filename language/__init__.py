"""Chinese text understanding shared by the domain packages (sentence embeddings); imports only ``config``."""
