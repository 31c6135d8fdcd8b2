"""pytest plugin (entry point ``pytest11``): registers telemrec's markers."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running telemrec tests")
    config.addinivalue_line("markers", "integration: needs an external program")
