// The page's language: Brazilian Portuguese by default; English when the browser
// prefers English, or when the user switches (?lang=en / ?lang=pt-BR, remembered).
// Every user-facing text comes from locales/<language>.js through t().
import en from './locales/en.js';
import ptBR from './locales/pt-BR.js';

const CATALOGS = { 'pt-BR': ptBR, en };
const STORAGE_KEY = 'telemed-lang';

function chosen() {
  const asked = new URLSearchParams(window.location.search).get('lang');
  if (asked && CATALOGS[asked]) {
    localStorage.setItem(STORAGE_KEY, asked);
    return asked;
  }
  const remembered = localStorage.getItem(STORAGE_KEY);
  if (remembered && CATALOGS[remembered]) return remembered;
  const preferred = (navigator.languages && navigator.languages[0]) || navigator.language || '';
  return preferred.toLowerCase().startsWith('en') ? 'en' : 'pt-BR';
}

export const language = chosen();
const catalog = CATALOGS[language];

export function t(key, params = {}) {
  const text = catalog[key] ?? ptBR[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

// Static texts of index.html: data-i18n (text), data-i18n-label (aria-label).
export function translatePage(root) {
  document.documentElement.lang = language;
  document.title = t('page.title');
  for (const element of root.querySelectorAll('[data-i18n]')) element.textContent = t(element.dataset.i18n);
  for (const element of root.querySelectorAll('[data-i18n-label]')) {
    element.setAttribute('aria-label', t(element.dataset.i18nLabel));
  }
  const switcher = root.querySelector('#lang');
  if (switcher) {
    switcher.addEventListener('click', () => {
      const next = language === 'en' ? 'pt-BR' : 'en';
      const url = new URL(window.location.href);
      url.searchParams.set('lang', next);
      window.location.assign(url.toString());
    });
  }
}
