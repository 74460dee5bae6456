"""Hand-written firefighting / HAZMAT facts for cl_toolkit demo data.

Each fact: dict(q, a, expected, match, domain, tags, para).
Sources: NIOSH Pocket Guide to Chemical Hazards (IDLH, LEL/UEL, flash point),
DOT Emergency Response Guidebook (UN IDs, guides), 49 CFR (hazard classes),
NFPA 704 / 10 / 30 / 291 / 1981 / 1982, OSHA 29 CFR 1910.134, IFSTA / NIMS basics.
"""

IDLH_PARA = [
    "What concentration of {c} does NIOSH rate as immediately dangerous to life or health?",
    "According to NIOSH, at what level is {c} IDLH?",
    "What IDLH value does the NIOSH Pocket Guide list for {c}?",
]
LEL_PARA = [
    "What is the lower explosive limit of {c} in air?",
    "What is the lowest concentration of {c} in air that can burn?",
]
UEL_PARA = [
    "What is the upper explosive limit of {c} in air?",
    "Above what concentration in air is {c} too rich to burn?",
]
FP_PARA = [
    "At what temperature does {c} give off enough vapor to ignite?",
    "What flash point does the NIOSH Pocket Guide list for {c}?",
]
UN_PARA = [
    "Which UN ID number identifies {c}?",
    "What four-digit identification number is used for {c} shipments?",
    "Under which UN ID is {c} shipped?",
]
ERG_PARA = [
    "Which Emergency Response Guidebook guide covers {c}?",
    "In the ERG, which orange-page guide applies to {c}?",
]

_counter = {"idlh": 0, "lel": 0, "uel": 0, "fp": 0, "un": 0, "erg": 0}


def _rot(kind, templates, c):
    i = _counter[kind]
    _counter[kind] += 1
    return templates[i % len(templates)].format(c=c)


def F(q, a, expected, match, domain, tags, para):
    return dict(q=q, a=a, expected=expected, match=match, domain=domain, tags=tags, para=para)


def idlh(c, v):
    return F(f"What is the NIOSH IDLH for {c}?", f"The NIOSH IDLH for {c} is {v} ppm.",
             f"{v} ppm", "numeric", "exposure_limits", ["idlh", "niosh"], _rot("idlh", IDLH_PARA, c))


def lel(c, v):
    return F(f"What is the LEL of {c}?", f"The LEL of {c} is {v} %.",
             f"{v} %", "numeric", "flammability", ["lel"], _rot("lel", LEL_PARA, c))


def uel(c, v):
    return F(f"What is the UEL of {c}?", f"The UEL of {c} is {v} %.",
             f"{v} %", "numeric", "flammability", ["uel"], _rot("uel", UEL_PARA, c))


def fp(c, v):
    return F(f"What is the flash point of {c}?", f"The flash point of {c} is {v} °F.",
             f"{v} °F", "numeric", "flammability", ["flash_point"], _rot("fp", FP_PARA, c))


def un(c, n, para=None):
    para_text = _rot("un", UN_PARA, c)
    return F(f"What is the UN number for {c}?", f"The UN number for {c} is UN{n}.",
             f"UN{n}", "contains", "hazmat_id", ["un_number"], para or para_text)


def erg(c, g):
    cap = c[0].upper() + c[1:]
    verb = "use" if c.endswith("batteries") else "uses"
    return F(f"What ERG guide number is used for {c}?", f"{cap} {verb} ERG Guide {g}.",
             f"Guide {g}", "contains", "hazmat_id", ["erg_guide"], _rot("erg", ERG_PARA, c))


def dot_class(what, label, para):
    cap = what[0].upper() + what[1:]
    kind = "division" if label.startswith("Division") else "hazard class"
    q = f"What DOT {kind} covers {what}?"
    a = f"{cap} are DOT Hazard {label}." if label.startswith("Class") else f"{cap} are DOT {label}."
    return F(q, a, label, "contains", "hazmat_id", ["dot_class"], para)


def nfpa704(color, meaning, para):
    return F(f"What does the {color} section of the NFPA 704 diamond indicate?",
             f"The {color} section of the NFPA 704 diamond indicates {meaning}.",
             meaning, "contains", "hazmat_id", ["nfpa704"], para)


def fire_class(what, cls, para):
    return F(f"What class of fire involves {what}?", f"Fires in {what} are {cls}.",
             cls, "contains", "equipment", ["extinguisher", "fire_class"], para)


# --------------------------------------------------------------------------- Q1
Q1 = [
    idlh("ammonia", 300),
    lel("methane", "5.0"),
    un("gasoline", 1203),
    fire_class("ordinary combustibles like wood and paper", "Class A",
               "Burning wood, paper, and cloth make which class of fire?"),
    idlh("chlorine", 10),
    F("What are the four elements of the fire tetrahedron?",
      "The fire tetrahedron is fuel, heat, oxygen, and chemical chain reaction.",
      "chemical chain reaction", "contains", "fire_behavior", ["fire_tetrahedron"],
      "Which four components make up the fire tetrahedron?"),
    erg("gasoline", 128),
    idlh("hydrogen sulfide", 100),
    uel("methane", 15),
    F("What does ICS stand for?", "ICS stands for Incident Command System.",
      "Incident Command System", "contains", "incident_command", ["ics"],
      "What is the full name of ICS in emergency management?"),
    un("anhydrous ammonia", 1005),
    idlh("carbon monoxide", 1200),
    fire_class("flammable liquids and gases", "Class B",
               "A burning pool of gasoline is which class of fire?"),
    lel("propane", "2.1"),
    F("How many times does water expand when it turns to steam?",
      "Water expands about 1700 times when it turns to steam.",
      "1700 times", "numeric", "fire_behavior", ["steam_expansion"],
      "By how much does the volume of water increase when it becomes steam?"),
    idlh("hydrogen cyanide", 50),
    erg("anhydrous ammonia", 125),
    dot_class("flammable liquids", "Class 3", "Which hazard class does DOT assign to flammable liquids?"),
    idlh("sulfur dioxide", 100),
    fire_class("energized electrical equipment", "Class C",
               "Which fire class applies when live electrical equipment is burning?"),
    lel("hydrogen", "4.0"),
    F("What does PAR stand for on the fireground?", "PAR stands for Personnel Accountability Report.",
      "Personnel Accountability Report", "contains", "incident_command", ["accountability"],
      "In fireground accountability, what is the full name of a PAR?"),
    idlh("benzene", 500),
    un("chlorine", 1017),
    F("At about what temperature does flashover occur?", "Flashover occurs at about 1100 °F.",
      "1100 °F", "numeric", "fire_behavior", ["flashover"],
      "What approximate room temperature is associated with flashover?"),
    uel("acetylene", 100),
    nfpa704("blue", "health hazard",
            "On an NFPA 704 placard, what hazard does the blue quadrant show?"),
    idlh("toluene", 500),
    F("What does PASS stand for when using an extinguisher?",
      "PASS stands for Pull, Aim, Squeeze, Sweep.",
      "Pull, Aim, Squeeze, Sweep", "contains", "equipment", ["extinguisher", "pass_method"],
      "What four steps does the PASS method for fire extinguishers describe?"),
    erg("chlorine", 124),
    fp("gasoline", -45),
    idlh("phosgene", 2),
    F("What does BLEVE stand for?", "BLEVE stands for boiling liquid expanding vapor explosion.",
      "boiling liquid expanding vapor explosion", "contains", "fire_behavior", ["bleve"],
      "What is the full name behind the acronym BLEVE?"),
    dot_class("corrosive materials", "Class 8", "Which DOT hazard class is used for corrosives?"),
    F("At what cylinder level does the SCBA low-air alarm activate?",
      "The SCBA low-air alarm activates at 33 % of cylinder pressure.",
      "33 %", "numeric", "equipment", ["scba", "nfpa1981"],
      "Under NFPA 1981, at what remaining air level does the SCBA end-of-service alarm sound?"),
    idlh("acetone", 2500),
    fp("acetone", 0),
    F("What is the optimal span of control in ICS?",
      "The optimal ICS span of control is five subordinates.",
      "five", "contains", "incident_command", ["span_of_control", "ics"],
      "How many subordinates is ideal for one ICS supervisor?"),
    nfpa704("red", "flammability",
            "On an NFPA 704 placard, what hazard does the red quadrant show?"),
    idlh("methanol", 6000),
    F("What are the three methods of heat transfer?",
      "Heat transfers by conduction, convection, and radiation.",
      "conduction, convection, and radiation", "contains", "fire_behavior", ["heat_transfer"],
      "By which three ways does heat move from one place to another?"),
    un("propane", 1978),
    F("What is the nozzle pressure for a handline fog nozzle?",
      "A standard handline fog nozzle operates at 100 psi.",
      "100 psi", "numeric", "equipment", ["nozzle", "hydraulics"],
      "At what pressure should a standard fog nozzle on a handline be supplied?"),
    idlh("hydrogen chloride", 50),
    F("What is the NFPA flash point limit for a flammable liquid?",
      "Under NFPA, a flammable liquid has a flash point below 100 °F.",
      "100 °F", "numeric", "flammability", ["nfpa30", "flash_point"],
      "Below what flash point does NFPA classify a liquid as flammable rather than combustible?"),
    F("What do the orange pages of the ERG contain?",
      "The orange pages of the ERG contain the response guides.",
      "response guides", "contains", "hazmat_id", ["erg_pages"],
      "What is found in the orange-bordered pages of the Emergency Response Guidebook?"),
    F("What percentage of normal air is oxygen?", "Normal air is about 20.9 % oxygen.",
      "20.9 %", "numeric", "fire_behavior", ["oxygen"],
      "How much oxygen does ordinary air contain by volume?"),
    F("What is the contaminated area at a hazmat incident called?",
      "The contaminated area is called the hot zone.",
      "hot zone", "contains", "incident_command", ["hazmat_zones"],
      "Which control zone at a hazmat scene contains the contamination?"),
]

# --------------------------------------------------------------------------- Q2
Q2 = [
    idlh("hydrogen fluoride", 30),
    lel("butane", "1.6"),
    un("diesel fuel", 1202),
    fire_class("combustible metals", "Class D",
               "Burning magnesium or titanium is which class of fire?"),
    idlh("formaldehyde", 20),
    F("What is the first stage of fire development?",
      "The first stage of fire development is the incipient stage.",
      "incipient", "contains", "fire_behavior", ["fire_stages"],
      "Which stage comes first when a fire starts to develop?"),
    erg("propane", 115),
    idlh("carbon dioxide", 40000),
    uel("hydrogen", 75),
    F("What does NIMS stand for?", "NIMS stands for National Incident Management System.",
      "National Incident Management System", "contains", "incident_command", ["nims"],
      "What is the full name of NIMS in emergency management?"),
    un("acetone", 1090),
    idlh("fluorine", 25),
    fire_class("cooking oils and fats", "Class K",
               "A deep fryer grease fire in a commercial kitchen is which class of fire?"),
    lel("gasoline", "1.4"),
    F("What is the liquid-to-vapor expansion ratio of propane?",
      "Propane expands about 270 times from liquid to vapor.",
      "270 times", "numeric", "fire_behavior", ["expansion_ratio"],
      "How many times larger is propane vapor than the liquid it came from?"),
    idlh("bromine", 3),
    erg("acetylene", 116),
    dot_class("explosives", "Class 1", "Which hazard class does DOT assign to explosives?"),
    idlh("ozone", 5),
    F("What symbol marks a Class A extinguisher?",
      "A Class A extinguisher is marked with a green triangle.",
      "green triangle", "contains", "equipment", ["extinguisher", "symbols"],
      "Which shape and color identify extinguishers rated for Class A fires?"),
    lel("ammonia", 15),
    F("Which ICS section provides supplies and facilities?",
      "The Logistics Section provides supplies and facilities.",
      "Logistics", "contains", "incident_command", ["general_staff", "ics"],
      "In ICS, which general staff section is responsible for food, equipment, and facilities?"),
    idlh("arsine", 3),
    un("methanol", 1230),
    F("What is the sudden burning when air enters a hot, oxygen-starved room called?",
      "That event is called a backdraft.",
      "backdraft", "contains", "fire_behavior", ["backdraft"],
      "What do firefighters call the explosive ignition of hot gases after air is let into a sealed, smoldering room?"),
    lel("carbon monoxide", "12.5"),
    nfpa704("yellow", "instability",
            "On an NFPA 704 placard, what hazard does the yellow quadrant show?"),
    idlh("phosphine", 50),
    F("What agent is used in an ABC dry chemical extinguisher?",
      "An ABC dry chemical extinguisher uses monoammonium phosphate.",
      "monoammonium phosphate", "contains", "equipment", ["extinguisher", "agents"],
      "Which dry chemical agent fills a multipurpose ABC extinguisher?"),
    erg("compressed oxygen", 122),
    fp("ethanol", 55),
    idlh("acrolein", 2),
    F("What is the liquid-to-vapor expansion ratio of LNG?",
      "LNG expands about 600 times from liquid to vapor.",
      "600 times", "numeric", "fire_behavior", ["expansion_ratio"],
      "By what factor does liquefied natural gas expand when it vaporizes?"),
    dot_class("radioactive materials", "Class 7",
              "Which DOT hazard class is used for radioactive materials?"),
    F("After how many seconds without motion does a PASS device sound its full alarm?",
      "A PASS device sounds its full alarm after 30 seconds without motion.",
      "30 seconds", "numeric", "equipment", ["pass_device", "nfpa1982"],
      "Under NFPA 1982, how long must a firefighter stay motionless before the PASS full alarm sounds?"),
    idlh("nitric oxide", 100),
    fp("benzene", 12),
    F("What does LUNAR stand for in a Mayday call?",
      "LUNAR stands for Location, Unit, Name, Assignment, Resources.",
      "Location, Unit, Name, Assignment, Resources", "contains", "incident_command", ["mayday"],
      "What information does the LUNAR acronym cover when calling a Mayday?"),
    nfpa704("white", "special hazards",
            "On an NFPA 704 placard, what hazard does the white quadrant show?"),
    idlh("acetic acid", 50),
    F("Is methane lighter or heavier than air?", "Methane is lighter than air.",
      "lighter", "contains", "fire_behavior", ["vapor_density"],
      "Compared with air, is methane gas lighter or heavier?"),
    erg("hydrogen sulfide", 117),
    F("What is the nozzle pressure for a handline smooth bore nozzle?",
      "A handline smooth bore nozzle operates at 50 psi.",
      "50 psi", "numeric", "equipment", ["nozzle", "hydraulics"],
      "At what pressure should a smooth bore nozzle on a handline be operated?"),
    idlh("styrene", 700),
    F("What is the DOT flash point limit for a flammable liquid?",
      "Under DOT, a flammable liquid has a flash point of not more than 140 °F.",
      "140 °F", "numeric", "flammability", ["dot", "flash_point"],
      "Up to what flash point does DOT treat a liquid as a flammable liquid?"),
    F("What do the green pages of the ERG contain?",
      "The green pages of the ERG contain initial isolation and protective action distances.",
      "initial isolation and protective action distances", "contains", "hazmat_id", ["erg_pages"],
      "What table is printed on the green-bordered pages of the Emergency Response Guidebook?"),
    F("How much heat does one pound of water absorb when it turns to steam?",
      "One pound of water absorbs about 970 BTU when it turns to steam.",
      "970 BTU", "numeric", "fire_behavior", ["latent_heat"],
      "What is the latent heat of vaporization of one pound of water?"),
    F("In which zone is the decontamination corridor located?",
      "The decontamination corridor is located in the warm zone.",
      "warm zone", "contains", "incident_command", ["hazmat_zones", "decon"],
      "Where at a hazmat scene is the decon corridor set up?"),
]

# --------------------------------------------------------------------------- Q3
Q3 = [
    idlh("xylene", 900),
    uel("propane", "9.5"),
    un("compressed hydrogen", 1049),
    F("What agent is used in a Class K extinguisher?",
      "A Class K extinguisher uses a wet chemical agent.",
      "wet chemical", "contains", "equipment", ["extinguisher", "agents"],
      "Which type of agent is found in extinguishers rated for kitchen grease fires?"),
    idlh("ethanol", 3300),
    F("What is the liquid-to-vapor expansion ratio of liquid oxygen?",
      "Liquid oxygen expands about 861 times from liquid to vapor.",
      "861 times", "numeric", "fire_behavior", ["expansion_ratio"],
      "By what factor does liquid oxygen expand when it turns into gas?"),
    erg("sulfuric acid", 137),
    idlh("isopropyl alcohol", 2000),
    lel("ethanol", "3.3"),
    F("What OSHA rule requires a backup team outside when crews enter an IDLH atmosphere?",
      "That is the two-in, two-out rule.",
      "two-in, two-out", "contains", "incident_command", ["osha", "accountability"],
      "Which respiratory protection rule says two members must stay outside while two work inside an IDLH area?"),
    un("compressed oxygen", 1072),
    idlh("hexane", 1100),
    F("How often must a CO2 extinguisher be hydrostatically tested?",
      "A CO2 extinguisher is hydrostatically tested every 5 years.",
      "5 years", "numeric", "equipment", ["extinguisher", "nfpa10"],
      "What is the hydrostatic test interval for a carbon dioxide extinguisher?"),
    lel("acetone", "2.5"),
    F("What is the boiling point of liquid nitrogen?", "Liquid nitrogen boils at -320 °F.",
      "-320 °F", "numeric", "fire_behavior", ["cryogenics"],
      "At what temperature does liquid nitrogen turn into gas?"),
    idlh("carbon disulfide", 500),
    erg("lithium ion batteries", 147),
    dot_class("miscellaneous dangerous goods", "Class 9",
              "Which DOT hazard class is used for miscellaneous dangerous goods?"),
    idlh("carbon tetrachloride", 200),
    F("What is the proper climbing angle for a ladder?",
      "The proper ladder climbing angle is 75 degrees.",
      "75 degrees", "numeric", "equipment", ["ladders"],
      "At what angle should a ladder be set for safe climbing?"),
    lel("benzene", "1.2"),
    F("Which side of a building is side A?", "Side A is the front of the building.",
      "front", "contains", "incident_command", ["size_up"],
      "In fireground building designation, what does side A refer to?"),
    idlh("chloroform", 500),
    un("sulfuric acid", 1830),
    F("Is chlorine gas lighter or heavier than air?", "Chlorine gas is heavier than air.",
      "heavier", "contains", "fire_behavior", ["vapor_density"],
      "Relative to air, is chlorine gas heavier or lighter?"),
    uel("carbon disulfide", 50),
    dot_class("materials that are dangerous when wet", "Division 4.3",
              "Which DOT division applies to materials that are dangerous when wet?"),
    idlh("ethylene oxide", 800),
    F("What temperature rating does a red sprinkler bulb have?",
      "A red sprinkler bulb is rated at 155 °F.",
      "155 °F", "numeric", "equipment", ["sprinklers"],
      "At what temperature does a sprinkler with a red glass bulb operate?"),
    fp("methanol", 52),
    erg("ammonium nitrate", 140),
    idlh("acrylonitrile", 85),
    F("What is it called when fire gases ignite along the ceiling ahead of the flames?",
      "That is called rollover.",
      "rollover", "contains", "fire_behavior", ["rollover"],
      "What term describes flames rolling across the ceiling as unburned smoke gases ignite?"),
    dot_class("poison gases", "Division 2.3", "Which DOT division applies to poison gases?"),
    F("In which zone should the command post be located?",
      "The command post should be located in the cold zone.",
      "cold zone", "contains", "incident_command", ["hazmat_zones"],
      "Where at a hazmat scene should the incident command post be set up?"),
    idlh("hydrazine", 50),
    fp("diethyl ether", -49),
    F("What color are the caps of a Class AA fire hydrant?",
      "Class AA fire hydrants have light blue caps.",
      "light blue", "contains", "equipment", ["hydrants", "nfpa291"],
      "How are the caps of a Class AA hydrant painted?"),
    un("lithium ion batteries", 3480,
       "What four-digit identification number is used for shipments of lithium ion batteries?"),
    idlh("methyl isocyanate", 3),
    F("How much does one gallon of water weigh?", "One gallon of water weighs 8.34 lb.",
      "8.34 lb", "numeric", "fire_behavior", ["water"],
      "What is the weight of a single gallon of water?"),
    F("What colors are on the DOT Class 8 corrosive placard?",
      "The Class 8 corrosive placard is black and white.",
      "black and white", "contains", "hazmat_id", ["placards"],
      "Which two colors make up the corrosive placard?"),
    fp("toluene", 40),
    idlh("nitric acid", 25),
    F("What is the service life of a composite SCBA cylinder?",
      "A composite SCBA cylinder has a service life of 15 years.",
      "15 years", "numeric", "equipment", ["scba"],
      "How many years can a composite SCBA cylinder stay in service?"),
    F("What is the boiling point of propane?", "Propane boils at -44 °F.",
      "-44 °F", "numeric", "fire_behavior", ["boiling_point"],
      "At what temperature does liquid propane boil at atmospheric pressure?"),
    F("What does a W with a line through it mean on the NFPA 704 diamond?",
      "A W with a line through it means the material reacts with water.",
      "reacts with water", "contains", "hazmat_id", ["nfpa704"],
      "On an NFPA 704 placard, what does a struck-through W in the white quadrant warn about?"),
    F("From which direction should responders approach a hazmat release?",
      "Responders should approach a hazmat release from upwind.",
      "upwind", "contains", "incident_command", ["hazmat_approach"],
      "Which way should crews come in when approaching a hazardous materials release?"),
]
