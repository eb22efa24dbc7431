"""lmklib: a thin library under five reproducible facial-landmark paper notebooks.

Sub-modules are imported on demand (``from lmklib import metrics``) so that importing the
package stays cheap for the CLI and for notebooks that need only a part of it.
"""

__version__ = "0.1.0"
