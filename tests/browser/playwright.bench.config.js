// @ts-check
// The benchmarks' Playwright configuration (tests/bench/network.sh): the tests' own, for files named *.bench.js,
// which the tests' run never picks up.
import config from './playwright.config.js';

export default { ...config, testMatch: '*.bench.js', timeout: 3_600_000 };
