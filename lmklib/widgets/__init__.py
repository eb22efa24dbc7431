"""Interactive notebook widgets. Each module keeps its logic in plain functions that return data
(crops, predictions, figure state), so they are tested without a browser; ipywidgets is imported
only when a widget is built."""
