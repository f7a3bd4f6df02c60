"""The command-line verbs that compose stages: fit + plot + report.

`bayesicl.cli` parses the arguments and hands them here; the stages below (`bayesicl.inference`,
`bayesicl.plot`, `bayesicl.report`) never import this package, so the data flow stays one way.

- `bayesicl.commands.fit`: `bayesicl fit RUNS` (and the demo's fit): evidence → fit → figures →
  report.html, with `FitOptions` built from the command line (`fit_options`);
- `bayesicl.commands.population`: the same for a folder of several configurations, and the
  `predict` and `cross-validate` verbs.
"""
