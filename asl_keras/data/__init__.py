"""Data: Kaggle-format reading, TFRecord conversion, folds, synthetic data, the tf.data pipeline."""
