"""The front ends: IPython magics, the command line, and the text and HTML views."""
