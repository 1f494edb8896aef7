"""The bambu-sim conformance suite (issue 14): strangers' clients against every model.

A package (the other test folders are not) because its tests share helper modules
(``stranger``, ``bla``, ``simfarm``, ``reference``, ``record_evidence``) through relative
imports: pytest's ``importlib`` mode puts no test folder on ``sys.path``, and the evidence
script runs as ``python -m simulators.tests.conformance.record_evidence``.
"""
