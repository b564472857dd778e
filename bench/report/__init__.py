"""``tiering bench report``: campaigns side by side (``build``), scaling fits (``scaling``), plots
(``plots``) and the document model they are written in (``doc``)."""
