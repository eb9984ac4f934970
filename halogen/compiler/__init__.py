"""The compiler: `halogen.yaml` and `models.d/` in, `out/` and `halogen.lock` out.

Site input (`site/`), the facts of model files (`facts`, `lock`, `memory`), the budget and the
fit (`budget`, `fit`, `fit_report`), rendering (`render/`), writing (`output`), and `pipeline`,
the one order every command runs them in."""
