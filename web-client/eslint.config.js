// Lint settings for the browser app (not served: see signaling/build.rs).
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['node_modules/**'] },
  js.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.browser } },
    rules: {
      'no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
      'no-restricted-properties': ['error',
        { property: 'innerHTML', message: 'Build DOM nodes with ui.js h(): never innerHTML.' },
        { property: 'outerHTML', message: 'Build DOM nodes with ui.js h(): never outerHTML.' }],
      'no-restricted-syntax': ['error', { selector: "CallExpression[callee.property.name='insertAdjacentHTML']", message: 'No HTML strings.' }],
    },
  },
];
