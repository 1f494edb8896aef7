"""Development harness for the Pantheon suite."""
