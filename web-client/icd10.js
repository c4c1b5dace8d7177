// @ts-check
/**
 * ICD-10 for the note's code search. Here, the codes common in commune and district practice with Vietnamese and
 * English names (offered first, and at once). On demand, WHO's whole list (2019 edition, 12,246 categories and
 * subcategories, English titles; `/icd10/who2019.tsv`, about 120 KB compressed), searchable without diacritics,
 * the Vietnamese names below laid over it. The server accepts only WHO's codes.
 */

/** @type {[string, string, string][]} code, Vietnamese name, English name */
export const ICD10 = [
  ['A09', 'Tiêu chảy và viêm dạ dày ruột do nhiễm trùng', 'Infectious gastroenteritis and colitis'],
  ['A01.0', 'Sốt thương hàn', 'Typhoid fever'],
  ['A15.0', 'Lao phổi, xác nhận bằng xét nghiệm đờm', 'Tuberculosis of lung, confirmed by sputum'],
  ['A90', 'Sốt Dengue', 'Dengue fever'],
  ['A91', 'Sốt xuất huyết Dengue', 'Dengue haemorrhagic fever'],
  ['A75.3', 'Sốt mò (Rickettsia tsutsugamushi)', 'Scrub typhus'],
  ['B01.9', 'Thủy đậu không biến chứng', 'Varicella without complication'],
  ['B05.9', 'Sởi không biến chứng', 'Measles without complication'],
  ['B08.4', 'Bệnh tay chân miệng', 'Hand, foot and mouth disease'],
  ['B15.9', 'Viêm gan A', 'Hepatitis A'],
  ['B18.1', 'Viêm gan B mạn tính', 'Chronic viral hepatitis B'],
  ['B35.4', 'Nấm da thân', 'Tinea corporis'],
  ['B54', 'Sốt rét', 'Malaria, unspecified'],
  ['B86', 'Bệnh ghẻ', 'Scabies'],
  ['B82.9', 'Nhiễm ký sinh trùng đường ruột', 'Intestinal parasitism'],
  ['D50.9', 'Thiếu máu do thiếu sắt', 'Iron deficiency anaemia'],
  ['D64.9', 'Thiếu máu', 'Anaemia, unspecified'],
  ['E03.9', 'Suy giáp', 'Hypothyroidism'],
  ['E05.9', 'Cường giáp', 'Thyrotoxicosis'],
  ['E11.9', 'Đái tháo đường típ 2 không biến chứng', 'Type 2 diabetes without complications'],
  ['E11.6', 'Đái tháo đường típ 2 có biến chứng khác', 'Type 2 diabetes with other complications'],
  ['E44.0', 'Suy dinh dưỡng vừa', 'Moderate protein-energy malnutrition'],
  ['E78.5', 'Rối loạn lipid máu', 'Hyperlipidaemia'],
  ['E86', 'Mất nước', 'Volume depletion (dehydration)'],
  ['F32.9', 'Giai đoạn trầm cảm', 'Depressive episode'],
  ['F41.1', 'Rối loạn lo âu lan tỏa', 'Generalized anxiety disorder'],
  ['F10.2', 'Nghiện rượu', 'Alcohol dependence'],
  ['G40.9', 'Động kinh', 'Epilepsy'],
  ['G43.9', 'Đau nửa đầu (migraine)', 'Migraine'],
  ['G44.2', 'Đau đầu do căng thẳng', 'Tension-type headache'],
  ['G51.0', 'Liệt mặt Bell', "Bell's palsy"],
  ['H10.9', 'Viêm kết mạc', 'Conjunctivitis'],
  ['H66.9', 'Viêm tai giữa', 'Otitis media'],
  ['I10', 'Tăng huyết áp nguyên phát', 'Essential (primary) hypertension'],
  ['I11.9', 'Bệnh tim do tăng huyết áp', 'Hypertensive heart disease'],
  ['I20.9', 'Đau thắt ngực', 'Angina pectoris'],
  ['I21.9', 'Nhồi máu cơ tim cấp', 'Acute myocardial infarction'],
  ['I48', 'Rung nhĩ', 'Atrial fibrillation'],
  ['I50.9', 'Suy tim', 'Heart failure'],
  ['I63.9', 'Nhồi máu não', 'Cerebral infarction'],
  ['I64', 'Đột quỵ', 'Stroke, not specified'],
  ['I83.9', 'Giãn tĩnh mạch chi dưới', 'Varicose veins of lower extremities'],
  ['I84.9', 'Trĩ', 'Haemorrhoids'],
  ['J00', 'Viêm mũi họng cấp (cảm lạnh)', 'Acute nasopharyngitis (common cold)'],
  ['J01.9', 'Viêm xoang cấp', 'Acute sinusitis'],
  ['J02.9', 'Viêm họng cấp', 'Acute pharyngitis'],
  ['J03.9', 'Viêm amidan cấp', 'Acute tonsillitis'],
  ['J06.9', 'Nhiễm trùng hô hấp trên cấp', 'Acute upper respiratory infection'],
  ['J11.1', 'Cúm', 'Influenza with other respiratory manifestations'],
  ['J18.9', 'Viêm phổi', 'Pneumonia, unspecified'],
  ['J20.9', 'Viêm phế quản cấp', 'Acute bronchitis'],
  ['J21.9', 'Viêm tiểu phế quản cấp', 'Acute bronchiolitis'],
  ['J30.4', 'Viêm mũi dị ứng', 'Allergic rhinitis'],
  ['J44.1', 'Bệnh phổi tắc nghẽn mạn tính đợt cấp', 'COPD with acute exacerbation'],
  ['J44.9', 'Bệnh phổi tắc nghẽn mạn tính (COPD)', 'Chronic obstructive pulmonary disease'],
  ['J45.9', 'Hen phế quản', 'Asthma'],
  ['K02.9', 'Sâu răng', 'Dental caries'],
  ['K21.9', 'Trào ngược dạ dày thực quản', 'Gastro-oesophageal reflux disease'],
  ['K25.9', 'Loét dạ dày', 'Gastric ulcer'],
  ['K29.7', 'Viêm dạ dày', 'Gastritis'],
  ['K30', 'Khó tiêu chức năng', 'Functional dyspepsia'],
  ['K35.8', 'Viêm ruột thừa cấp', 'Acute appendicitis'],
  ['K40.9', 'Thoát vị bẹn', 'Inguinal hernia'],
  ['K59.0', 'Táo bón', 'Constipation'],
  ['K74.6', 'Xơ gan', 'Cirrhosis of liver'],
  ['K80.2', 'Sỏi túi mật', 'Gallstones'],
  ['L01.0', 'Chốc lở', 'Impetigo'],
  ['L02.9', 'Áp xe da, nhọt', 'Cutaneous abscess, furuncle'],
  ['L03.9', 'Viêm mô tế bào', 'Cellulitis'],
  ['L20.9', 'Viêm da cơ địa', 'Atopic dermatitis'],
  ['L23.9', 'Viêm da tiếp xúc dị ứng', 'Allergic contact dermatitis'],
  ['L50.9', 'Mày đay', 'Urticaria'],
  ['M10.9', 'Gút (thống phong)', 'Gout'],
  ['M15.9', 'Thoái hóa đa khớp', 'Polyosteoarthritis'],
  ['M17.9', 'Thoái hóa khớp gối', 'Osteoarthritis of knee'],
  ['M54.5', 'Đau thắt lưng', 'Low back pain'],
  ['M54.2', 'Đau cổ', 'Cervicalgia'],
  ['M06.9', 'Viêm khớp dạng thấp', 'Rheumatoid arthritis'],
  ['M81.9', 'Loãng xương', 'Osteoporosis'],
  ['N18.9', 'Bệnh thận mạn', 'Chronic kidney disease'],
  ['N20.0', 'Sỏi thận', 'Calculus of kidney'],
  ['N39.0', 'Nhiễm khuẩn đường tiết niệu', 'Urinary tract infection'],
  ['N76.0', 'Viêm âm đạo cấp', 'Acute vaginitis'],
  ['O14.9', 'Tiền sản giật', 'Pre-eclampsia'],
  ['O21.0', 'Nôn nghén nhẹ', 'Mild hyperemesis gravidarum'],
  ['O80', 'Đẻ thường một thai', 'Single spontaneous delivery'],
  ['P59.9', 'Vàng da sơ sinh', 'Neonatal jaundice'],
  ['R05', 'Ho', 'Cough'],
  ['R06.0', 'Khó thở', 'Dyspnoea'],
  ['R10.4', 'Đau bụng', 'Abdominal pain'],
  ['R11', 'Buồn nôn và nôn', 'Nausea and vomiting'],
  ['R50.9', 'Sốt', 'Fever, unspecified'],
  ['R51', 'Đau đầu', 'Headache'],
  ['R56.0', 'Co giật do sốt', 'Febrile convulsions'],
  ['S01.9', 'Vết thương vùng đầu', 'Open wound of head'],
  ['S52.5', 'Gãy đầu dưới xương quay', 'Fracture of lower end of radius'],
  ['S61.9', 'Vết thương cổ tay và bàn tay', 'Open wound of wrist and hand'],
  ['S93.4', 'Bong gân cổ chân', 'Sprain of ankle'],
  ['T14.1', 'Vết thương hở', 'Open wound, unspecified body region'],
  ['T30.0', 'Bỏng', 'Burn, unspecified'],
  ['T63.0', 'Rắn cắn', 'Snake venom'],
  ['T78.4', 'Dị ứng', 'Allergy, unspecified'],
  ['W54', 'Chó cắn', 'Bitten or struck by dog'],
  ['Z00.0', 'Khám sức khỏe tổng quát', 'General medical examination'],
  ['Z34.9', 'Theo dõi thai nghén bình thường', 'Supervision of normal pregnancy'],
];

/** The shape of an ICD-10 code: a letter, two digits, optionally a dot and 1-4 more characters. */
export const ICD10_SHAPE = /^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$/;

/** Lower-case without Vietnamese diacritics, for forgiving search. @param {string} s */
export const fold = (s) => s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').replace(/đ/g, 'd').replace(/Đ/g, 'd').toLowerCase();

/** @typedef {[string, string, string]} IcdEntry code, Vietnamese name (the English one where none), English name */

const COMMON = new Set(ICD10.map(([c]) => c));
/** Every WHO code once loaded, common ones first. @type {IcdEntry[]} */
let all = ICD10;
/** Folded code and names of `all`, for search. @type {[string, string][]} */
let folded = ICD10.map(([c, vi, en]) => [fold(c), fold(`${vi} ${en}`)]);
/** @type {Map<string, IcdEntry>} */
let byCode = new Map(ICD10.map((e) => [e[0], e]));
/** @type {Promise<boolean> | null} */
let loading = null;

/** Whether WHO's whole list is loaded (else only the common codes are known). */
export const icdLoaded = () => all !== ICD10;

/** Loads WHO's whole list once; resolves to whether it is there. @returns {Promise<boolean>} */
export function loadIcd() {
  loading ??= fetch('/icd10/who2019.tsv')
    .then((r) => (r.ok ? r.text() : Promise.reject(new Error(String(r.status)))))
    .then((text) => {
      /** @type {IcdEntry[]} */
      const rest = [];
      for (const line of text.split('\n')) {
        const [code, en] = line.split('\t');
        if (code && en && !COMMON.has(code)) rest.push([code, en, en]);
      }
      all = [...ICD10, ...rest];
      folded = all.map(([c, vi, en]) => [fold(c), fold(vi === en ? en : `${vi} ${en}`)]);
      byCode = new Map(all.map((e) => [e[0], e]));
      return true;
    })
    .catch(() => {
      loading = null; // try again next time
      return false;
    });
  return loading;
}

/**
 * Up to `n` codes whose code starts with `q`, then those whose names hold every word of `q` (any order, without
 * accents); the common ones first. @param {string} q @param {number} [n] @returns {IcdEntry[]}
 */
export function searchIcd(q, n = 8) {
  const f = fold(q.trim());
  if (!f) return [];
  const words = f.split(/\s+/);
  /** @type {IcdEntry[]} */
  const codes = [];
  /** @type {IcdEntry[]} */
  const names = [];
  for (let i = 0; i < all.length && codes.length < n; i++) {
    const [c, text] = folded[i];
    if (c.startsWith(f)) codes.push(all[i]);
    else if (names.length < n && words.every((w) => text.includes(w))) names.push(all[i]);
  }
  return [...codes, ...names].slice(0, n);
}

/** A code's names, when the list knows it. @param {string} code @returns {IcdEntry | undefined} */
export const icdName = (code) => byCode.get(code);
