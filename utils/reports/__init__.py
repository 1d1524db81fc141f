"""What people look at: the pages (report.html of one evaluation folder, :mod:`.report`; compare.html of several,
:mod:`.compare`, also a command), the figures (:mod:`.plots`), and evaluation folders read back as replicates with
their paired differences (:mod:`.replicates`). The pipelines of :mod:`utils.evaluation` call these; nothing here
imports them."""
