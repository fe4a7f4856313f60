# pragma version ~=0.4.3
"""
@title Bisection
@notice The level-2 dispute game: a k-ary bisection with a clock over a sequence of commitments
        c_0 … c_n, where c_0 is agreed by both parties and c_n is asserted by the DEFENDER (the
        worker) and disputed by the CHALLENGER. It narrows the dispute to one index j with c_j
        agreed and c_{j+1} disputed. The same game runs over the optimizer steps of a segment
        and over the operations of one step: what c_j means is the host's business, this contract
        only sees bytes32 values.
        1. A host (a contract named once by `wire`) opens a game: (defender, challenger, c_0, c_n,
           n, k, move_seconds). The interval is [lo, hi] = [0, n]; with n = 1 it is pinned at once.
        2. The defender posts the commitments at the interior split points of [lo, hi] (`post`).
        3. The challenger names the part [p_i, p_{i+1}] whose start it accepts and whose end it
           disputes, resubmitting the posted values (`choose`). Repeat from 2 until hi = lo + 1:
           the game is PINNED at (lo, c_lo, c_hi).
        Split points of [lo, hi] with L = hi - lo >= 2: parts = min(k, L) and
        p_j = lo + (j * L) // parts for j = 0 … parts (integer division). Since parts <= L the points
        are strictly increasing, and every part is at most ceil(L / parts) < L long, so the interval
        strictly shrinks each round and a game ends after at most ceil(log_k(n)) rounds.
        Every move is due within `move_seconds` of the previous one (of the opening for the first);
        after that deadline anyone may call `timeout` and the party that owed the move loses.
@dev No external calls leave this contract: the host reads `outcome_of` (callback-free), so there is
     no reentrancy surface; the locks are kept for the house rule. The defender's values of a round
     are kept as one hash (the challenger resubmits them from the `Posted` event as calldata), which
     costs a fraction of storing k - 1 words per round. A zero commitment is refused everywhere, so it
     can never be confused with an empty slot.
"""

# Largest arity k, and so at most MAX_ARITY - 1 interior values per round.
MAX_ARITY: public(constant(uint256)) = 32
# Largest sequence length n (2**64 operations of one step is far beyond any record).
MAX_LENGTH: public(constant(uint256)) = 1 << 64
# Longest allowed move window.
MAX_MOVE_SECONDS: public(constant(uint256)) = 30 * 86_400
# Most hosts `wire` can name.
MAX_HOSTS: public(constant(uint256)) = 8

# Game status. The first two are the running states (whose move it is); the last three are final.
STATUS_NONE: public(constant(uint8)) = 0
STATUS_DEFENDER_TO_MOVE: public(constant(uint8)) = 1
STATUS_CHALLENGER_TO_MOVE: public(constant(uint8)) = 2
STATUS_PINNED: public(constant(uint8)) = 3
STATUS_DEFENDER_TIMED_OUT: public(constant(uint8)) = 4
STATUS_CHALLENGER_TIMED_OUT: public(constant(uint8)) = 5


struct Game:
    host: address
    defender: address
    challenger: address
    arity: uint256
    move_seconds: uint256
    lo: uint256
    hi: uint256
    c_lo: bytes32
    c_hi: bytes32
    status: uint8
    round: uint256
    deadline: uint256
    values_hash: bytes32


deployer: public(immutable(address))
# Contracts allowed to open games; fixed by the one `wire` call.
is_host: public(HashMap[address, bool])
wired: public(bool)
game_count: public(uint256)
games: public(HashMap[uint256, Game])


event Wired:
    hosts: DynArray[address, MAX_HOSTS]


event GameOpened:
    game_id: indexed(uint256)
    host: indexed(address)
    defender: indexed(address)
    challenger: address
    c_0: bytes32
    c_n: bytes32
    n: uint256
    arity: uint256
    move_seconds: uint256
    deadline: uint256


event Posted:
    game_id: indexed(uint256)
    round: uint256
    lo: uint256
    hi: uint256
    values: DynArray[bytes32, MAX_ARITY - 1]
    deadline: uint256


event Chosen:
    game_id: indexed(uint256)
    round: uint256
    part: uint256
    lo: uint256
    hi: uint256
    c_lo: bytes32
    c_hi: bytes32
    deadline: uint256


event Pinned:
    game_id: indexed(uint256)
    index: uint256
    c_lo: bytes32
    c_hi: bytes32


event TimedOut:
    game_id: indexed(uint256)
    status: uint8
    loser: address


@deploy
def __init__():
    """
    @notice Deploy; the deploying address may name the hosts once with `wire`.
    """
    deployer = msg.sender


@external
@nonreentrant
def wire(hosts: DynArray[address, MAX_HOSTS]):
    """
    @notice Name the contracts that may open games, once. Deployer only.
    @dev The deployer's only privilege; after it the host set is fixed forever and the deployer has
         no role. It cannot touch a game: hosts only open games, moves belong to the two parties.
    @param hosts The host contracts (non-zero, at least one).
    """
    assert msg.sender == deployer, "bisection: not deployer"
    assert not self.wired, "bisection: already wired"
    assert len(hosts) > 0, "bisection: no host"
    for host: address in hosts:
        assert host != empty(address), "bisection: zero host"
        self.is_host[host] = True
    self.wired = True
    log Wired(hosts=hosts)


@external
@nonreentrant
def open_game(
    defender: address,
    challenger: address,
    c_0: bytes32,
    c_n: bytes32,
    n: uint256,
    arity: uint256,
    move_seconds: uint256,
) -> uint256:
    """
    @notice Open a game over c_0 … c_n. A wired host only; the caller is recorded as the game's host.
    @dev The defender moves first, within `move_seconds`. With n = 1 the game is pinned at once at
         (0, c_0, c_n) and no move is due.
    @param defender The party that asserts c_n (the worker).
    @param challenger The party that disputes c_n (distinct from the defender).
    @param c_0 The agreed first commitment (non-zero).
    @param c_n The disputed last commitment (non-zero).
    @param n The sequence length, 1 … MAX_LENGTH.
    @param arity k, 2 … MAX_ARITY: the interval is cut into at most k parts each round.
    @param move_seconds Seconds each party has for each move, 1 … MAX_MOVE_SECONDS.
    @return The new game id (ids start at 1).
    """
    assert self.is_host[msg.sender], "bisection: not a host"
    assert defender != empty(address) and challenger != empty(address), "bisection: zero party"
    assert defender != challenger, "bisection: defender is the challenger"
    assert c_0 != empty(bytes32) and c_n != empty(bytes32), "bisection: zero commitment"
    assert n >= 1 and n <= MAX_LENGTH, "bisection: bad length"
    assert arity >= 2 and arity <= MAX_ARITY, "bisection: bad arity"
    assert move_seconds >= 1 and move_seconds <= MAX_MOVE_SECONDS, "bisection: bad move window"
    game_id: uint256 = self.game_count + 1
    self.game_count = game_id
    status: uint8 = STATUS_DEFENDER_TO_MOVE
    deadline: uint256 = block.timestamp + move_seconds
    if n == 1:
        status = STATUS_PINNED
        deadline = 0
    self.games[game_id] = Game(
        host=msg.sender,
        defender=defender,
        challenger=challenger,
        arity=arity,
        move_seconds=move_seconds,
        lo=0,
        hi=n,
        c_lo=c_0,
        c_hi=c_n,
        status=status,
        round=1,
        deadline=deadline,
        values_hash=empty(bytes32),
    )
    log GameOpened(
        game_id=game_id,
        host=msg.sender,
        defender=defender,
        challenger=challenger,
        c_0=c_0,
        c_n=c_n,
        n=n,
        arity=arity,
        move_seconds=move_seconds,
        deadline=deadline,
    )
    if n == 1:
        log Pinned(game_id=game_id, index=0, c_lo=c_0, c_hi=c_n)
    return game_id


@external
@nonreentrant
def post(game_id: uint256, values: DynArray[bytes32, MAX_ARITY - 1]):
    """
    @notice The defender's move: its commitments at the interior split points p_1 … p_{parts-1}
            of the current interval, in order. The game's defender only, on its turn, by the deadline.
    @dev Reads only the fields it needs (each cold read costs 2,100 gas) and overwrites the last
         round's values hash instead of clearing it in between (a non-zero → non-zero write costs
         a fifth of a zero → non-zero one); a stale hash is never read, since `choose` runs only in
         the challenger's turn that this move opens.
    @param game_id The game.
    @param values c_{p_1} … c_{p_{parts-1}}: exactly parts - 1 non-zero words.
    """
    assert self.games[game_id].status == STATUS_DEFENDER_TO_MOVE, "bisection: not the defender's turn"
    assert msg.sender == self.games[game_id].defender, "bisection: not the defender"
    assert block.timestamp <= self.games[game_id].deadline, "bisection: move too late"
    lo: uint256 = self.games[game_id].lo
    hi: uint256 = self.games[game_id].hi
    parts: uint256 = min(self.games[game_id].arity, hi - lo)
    assert len(values) == parts - 1, "bisection: wrong number of values"
    for value: bytes32 in values:
        assert value != empty(bytes32), "bisection: zero commitment"
    deadline: uint256 = block.timestamp + self.games[game_id].move_seconds
    self.games[game_id].values_hash = keccak256(abi_encode(values))
    self.games[game_id].status = STATUS_CHALLENGER_TO_MOVE
    self.games[game_id].deadline = deadline
    log Posted(game_id=game_id, round=self.games[game_id].round, lo=lo, hi=hi, values=values, deadline=deadline)


@external
@nonreentrant
def choose(game_id: uint256, part: uint256, values: DynArray[bytes32, MAX_ARITY - 1]):
    """
    @notice The challenger's move: part i of the current split, [p_i, p_{i+1}], whose start it
            accepts and whose end it disputes. The game's challenger only, on its turn, by the deadline.
    @dev `values` must be exactly what the defender posted this round (from the `Posted` event);
         the part's ends take their commitments from them (c_lo for i = 0, c_hi for the last part).
         When the part is one step long the game is PINNED there.
    @param game_id The game.
    @param part i, 0 … parts - 1.
    @param values The defender's values of this round.
    """
    assert self.games[game_id].status == STATUS_CHALLENGER_TO_MOVE, "bisection: not the challenger's turn"
    assert msg.sender == self.games[game_id].challenger, "bisection: not the challenger"
    assert block.timestamp <= self.games[game_id].deadline, "bisection: move too late"
    posted: bytes32 = self.games[game_id].values_hash
    assert keccak256(abi_encode(values)) == posted, "bisection: values differ from the posted ones"
    parts: uint256 = len(values) + 1
    assert part < parts, "bisection: part out of range"
    lo: uint256 = self.games[game_id].lo
    length: uint256 = self.games[game_id].hi - lo
    new_lo: uint256 = lo + part * length // parts
    new_hi: uint256 = lo + (part + 1) * length // parts
    c_lo: bytes32 = empty(bytes32)
    c_hi: bytes32 = empty(bytes32)
    if part > 0:
        c_lo = values[part - 1]
        self.games[game_id].c_lo = c_lo
        self.games[game_id].lo = new_lo
    else:
        c_lo = self.games[game_id].c_lo
    if part + 1 < parts:
        c_hi = values[part]
        self.games[game_id].c_hi = c_hi
        self.games[game_id].hi = new_hi
    else:
        c_hi = self.games[game_id].c_hi
    round: uint256 = self.games[game_id].round
    deadline: uint256 = 0
    if new_hi - new_lo == 1:
        self.games[game_id].status = STATUS_PINNED
        self.games[game_id].deadline = 0
    else:
        deadline = block.timestamp + self.games[game_id].move_seconds
        self.games[game_id].status = STATUS_DEFENDER_TO_MOVE
        self.games[game_id].round = round + 1
        self.games[game_id].deadline = deadline
    log Chosen(game_id=game_id, round=round, part=part, lo=new_lo, hi=new_hi, c_lo=c_lo, c_hi=c_hi, deadline=deadline)
    if deadline == 0:
        log Pinned(game_id=game_id, index=new_lo, c_lo=c_lo, c_hi=c_hi)


@external
@nonreentrant
def timeout(game_id: uint256):
    """
    @notice The party that owed the move missed its deadline: it loses. Anyone may call.
    @param game_id A running game whose deadline has passed.
    """
    status: uint8 = self.games[game_id].status
    assert status == STATUS_DEFENDER_TO_MOVE or status == STATUS_CHALLENGER_TO_MOVE, "bisection: game not running"
    assert block.timestamp > self.games[game_id].deadline, "bisection: deadline not passed"
    loser: address = self.games[game_id].defender
    if status == STATUS_CHALLENGER_TO_MOVE:
        status = STATUS_CHALLENGER_TIMED_OUT
        loser = self.games[game_id].challenger
    else:
        status = STATUS_DEFENDER_TIMED_OUT
    self.games[game_id].status = status
    log TimedOut(game_id=game_id, status=status, loser=loser)


@view
@external
def outcome_of(game_id: uint256) -> (uint8, uint256, bytes32, bytes32):
    """
    @notice What the host reads: (status, index, c_lo, c_hi). For a PINNED game, index = j with
            c_j = c_lo agreed and c_{j+1} = c_hi disputed; for a running game, the current interval's
            start and its two end commitments; for a timed-out game, where it stood.
    @dev A host must also check `games(game_id).host` is itself before acting on an outcome.
    @param game_id The game.
    @return status, index (lo), c_lo, c_hi.
    """
    game: Game = self.games[game_id]
    return game.status, game.lo, game.c_lo, game.c_hi


@view
@external
def split_points(game_id: uint256) -> DynArray[uint256, MAX_ARITY + 1]:
    """
    @notice The current interval's split points p_0 = lo … p_parts = hi (empty once the game ended).
    @param game_id The game.
    @return The points at which the defender owes (interior) commitments this round.
    """
    game: Game = self.games[game_id]
    points: DynArray[uint256, MAX_ARITY + 1] = []
    if game.status != STATUS_DEFENDER_TO_MOVE and game.status != STATUS_CHALLENGER_TO_MOVE:
        return points
    length: uint256 = game.hi - game.lo
    parts: uint256 = min(game.arity, length)
    for j: uint256 in range(MAX_ARITY + 1):
        if j > parts:
            break
        points.append(game.lo + j * length // parts)
    return points
