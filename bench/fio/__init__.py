"""fio sweeps on a directory: profiles (``profiles``), the sweep (``sweep``), fio's JSON into result rows
(``parse``), and what a result depends on besides the workload (``env``)."""
