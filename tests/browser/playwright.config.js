// @ts-check
// Playwright drives Debian's Chromium (never a downloaded browser) against the server that run.sh started.
import { defineConfig } from '@playwright/test';

const baseURL = process.env.TH_BASE_URL;
if (!baseURL) throw new Error('TH_BASE_URL is not set: run the tests through tests/browser/run.sh');

export default defineConfig({
  testDir: '.',
  testMatch: '*.spec.js',
  // A loaded 2-core machine: one test at a time, generous limits, conditions waited for (never fixed sleeps).
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 240_000,
  expect: { timeout: 30_000 },
  reporter: [['list']],
  outputDir: './test-results',
  use: {
    baseURL,
    actionTimeout: 30_000,
    navigationTimeout: 60_000,
    locale: 'vi-VN',
    timezoneId: 'Asia/Ho_Chi_Minh',
    permissions: ['camera', 'microphone'],
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
        '--disable-component-update', '--disable-sync',
        '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
        '--autoplay-policy=no-user-gesture-required',
        // TH_CHROME_LOG=1 DEBUG=pw:browser: Chromium's congestion control explains its sending rate on stderr
        // ("Switch to HOLD ... avg loss rate" is the loss it reads in our transport-wide feedback).
        ...(process.env.TH_CHROME_LOG
          ? ['--enable-logging=stderr', '--v=0', '--vmodule=goog_cc_network_control=1,delay_based_bwe=1,loss_based_bwe_v2=2,send_side_bandwidth_estimation=2']
          : []),
      ],
    },
  },
});
