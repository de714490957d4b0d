"""Classical image-quality measures as first-class models (``model=classical``): full-reference
metrics from piq (``fr``), BRISQUE with the LIVE-trained regressor or an SVR retrained on the run's
split (``brisque``), NIQE (``niqe``), and a per-image feature cache (``cache``)."""
