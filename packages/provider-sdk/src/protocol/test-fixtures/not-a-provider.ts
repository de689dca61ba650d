// A module whose exports are not a provider definition.
export const hello = 'world';
export default { type: 'looks-like-one', create() {} };
