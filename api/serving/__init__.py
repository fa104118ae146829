"""The model server: `shrinkwrap serve-model NAME@ALIAS | NAME:VERSION` (api/serving/cli.py).

app.py (routes) · state.py (loaded version, alias following, auth) · batcher.py (queue + dynamic
batching) · predictors.py / generation.py (what a batch does per kind of model) · loader.py (registry
reference -> verified export -> predictor) · metrics.py (Prometheus text) · settings.py · schemas.py.
"""
