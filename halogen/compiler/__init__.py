"""The compiler: `halogen.yaml` and `models.d/` in, `out/` and `halogen.lock` out.

Site input (`site/`, the lock among it), the facts of model files (`facts`, `memory`), the
budget and the fit (`budget`, `fit`, `fit_report`), rendering (`render/`, handed the facts and
the budget's variables rather than importing them), writing (`output`), and `pipeline`, the one
order every command runs them in. A folder here imports this package's own modules never: the
package check in tests/test_import_cycles.py holds parent and child apart like siblings."""
