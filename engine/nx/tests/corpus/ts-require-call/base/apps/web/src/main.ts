import { ui } from '@w/ui';
import { f } from '@w/feat/one';
console.log(ui, f);
