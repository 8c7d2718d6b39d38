"""Making models: the trainer (`trainer.train`: cache -> pairs -> fit -> threshold -> test), its
batches and per-epoch loop (Keras), the unrestricted View 2 protocol, ensembles, and re-finishing
runs trained elsewhere. Importing this package does not import TensorFlow; training does."""
